"""Reading stored features back as training instances (windows or padded clips)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from spira_assets.features.config import FeatureConfig, WindowConfig
from spira_assets.features.windows import cut, instance_length, instances
from spira_assets.storage.shards import open_shard


@dataclass(frozen=True)
class Instance:
    shard: int
    start: int  # absolute frame in the shard
    available: int  # frames of the recording from ``start``
    label: int
    recording: int


class StoredFeatureWindows(torch.utils.data.Dataset[tuple[torch.Tensor, int, int]]):
    """Windows over memory-mapped feature shards: no decoding, no transform, no copy until a
    window is cut. ``index`` is (a selection of) the ``spectrogram_features`` table."""

    def __init__(
        self, index: pl.DataFrame, root: Path, features: FeatureConfig, windows: WindowConfig
    ) -> None:
        self.features = features
        self.length = instance_length(windows, features)
        shards = sorted(set(index.get_column("shard").to_list()))
        self.maps = [open_shard(root / s, np.float32, features.n_features) for s in shards]
        position = {s: i for i, s in enumerate(shards)}
        self.items: list[Instance] = []
        for recording, (shard, offset, frames, label) in enumerate(
            index.select("shard", "frame_offset", "frames", "label").iter_rows()
        ):
            for start in instances(frames, windows, features):
                self.items.append(
                    Instance(position[shard], offset + start, frames - start, label, recording)
                )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        item = self.items[i]
        frames = self.maps[item.shard][item.start : item.start + min(item.available, self.length)]
        window = np.array(cut(frames, 0, self.length))  # a private, writable copy
        return torch.from_numpy(window), item.label, item.recording

    def batches(self, size: int) -> list[list[int]]:
        return [list(range(i, min(i + size, len(self)), 1)) for i in range(0, len(self), size)]
