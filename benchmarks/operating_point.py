"""Operating-point benchmark (not a test): the threshold rules on the models of
``benchmarks/model_stability.py``, on the same models and the same scores.

    .venv/bin/python benchmarks/operating_point.py --work /tmp/stab/bench5 [--keys 0,1,2,3,4]

For each key's model (the one ``model_stability.py`` trained in ``<work>/key<k>/data``) this
scores validation and test recordings, clean and with the model's hospital noise (the fixed
draws training and evaluation use), calibrates them with the model's own map, chooses the
threshold with the rule ``sensitivity`` (the highest threshold reaching 0.90 on clean and noisy
validation: the baseline) and ``sensitivity_margin`` (the same, moved halfway down to the next
control: ours), and prints each rule's validation and test sensitivity and specificity. Last
line: ``min_test_clean_sensitivity baseline=<x> margin=<y> min_test_specificity baseline=<u>
margin=<v>``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl
import torch

from spira_assets.evaluation.config import EVALUATION
from spira_assets.evaluation.metrics import aggregate
from spira_assets.ml.calibration import choose_operating_point, rates
from spira_assets.ml.inputs import with_split
from spira_assets.ml.scoring import ModelUnderTest, per_recording_noise
from spira_assets.ml.train import Noise
from spira_assets.ml.validation_fit import VALIDATION_NOISE_SALT
from spira_assets.storage.lake import Lake
from spira_assets.storage.layout import DataLayout
from spira_assets.storage.tables import AUDIO_16K

RULES = {"baseline": "sensitivity", "margin": "sensitivity_margin"}


def scored(root: Path) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    layout = DataLayout.from_location(str(root))
    lake = Lake(layout.lake)
    version = next(p.name for p in sorted((root / "models").iterdir()) if p.is_dir())
    model = ModelUnderTest.load(layout, lake, version)
    audio = with_split(lake.read_table(AUDIO_16K), model.split)
    device = torch.device("cpu")
    bank = model.noise(lake, layout, device)
    out: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for part, salt in (("validation", VALIDATION_NOISE_SALT), ("test", EVALUATION.noisy_seed)):
        rows = model.recordings(audio.filter(pl.col("split") == part).drop("split"), root, lake,
                                layout)  # fmt: skip
        conditions: dict[str, Noise | None] = {"clean": None}
        if bank is not None:
            conditions["noisy"] = per_recording_noise(bank, model.train_config.augment, rows, salt)
        for condition, noise in conditions.items():
            frame = aggregate(model.score(rows, device, noise), "recording", model.calibration)
            labels = frame.get_column("label").to_numpy().astype(bool)
            out[(part, condition)] = (labels, frame.get_column("score").to_numpy())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--keys", default="0,1,2,3,4")
    parser.add_argument("--target", type=float, default=0.9)
    args = parser.parse_args()
    worst: dict[str, list[float]] = {"sens": [], "spec": [], "sens_m": [], "spec_m": []}
    for key in args.keys.split(","):
        out = scored(args.work / f"key{key}" / "data")
        validation = {c: out[(p, c)] for (p, c) in out if p == "validation"}
        for name, rule in RULES.items():
            point = choose_operating_point(rule, validation, args.target, 0.5)  # type: ignore[arg-type]
            cells = []
            for (part, condition), (labels, scores) in out.items():
                r = rates(labels, scores, point.threshold)
                cells.append(f"{part} {condition} {r['sensitivity']:.3f}/{r['specificity']:.3f}")
                if part == "test":
                    suffix = "" if name == "baseline" else "_m"
                    if condition == "clean":
                        worst["sens" + suffix].append(r["sensitivity"])
                    worst["spec" + suffix].append(r["specificity"])
            print(f"key {key} {name:8s} threshold {point.threshold:.3f}: " + ", ".join(cells))
    print(
        f"min_test_clean_sensitivity baseline={min(worst['sens']):.3f} "
        f"margin={min(worst['sens_m']):.3f} min_test_specificity "
        f"baseline={min(worst['spec']):.3f} margin={min(worst['spec_m']):.3f}"
    )


if __name__ == "__main__":
    main()
