"""How fast the training step runs, chosen by measurement (docs/PERFORMANCE.md "Training
throughput"), and recorded in the lineage because two of its settings change the numbers.

- **precision**: bf16 autocast of the forward pass where the device supports it (CUDA with
  bf16; on the CPU, oneDNN's bf16 kernels, detected at run time:
  ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``, true with AVX-512 BF16 or AMX), for profiles
  that allow mixed precision. The published profile (``mixed_precision=False``) and any
  reproduction of an fp32 model stay fp32.
- **dropout masks**: PyTorch draws CPU dropout masks with one serial Mersenne Twister per
  element (about a tenth of a training step of SpiraConv on 2 cores); ``FastDropout`` draws
  the same Bernoulli(1 - p) masks from NumPy's PCG64, seeded from the training seed, about 3x
  faster. Other masks than PyTorch's, so other weights: only with the fast settings.
- the time pooling's training path (``model.TimePool``) gives PyTorch's values and gradients
  bit for bit and is used by every setting.

``TRAINING_SPEED_VERSION`` names the fast settings; a model records ``training_speed`` (its
precision, dropout masks and this version) in its lineage, and reproduction trains with the
recorded settings again.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from spira_assets.ml.train_config import TrainConfig

Precision = Literal["fp32", "bf16"]
DropoutMasks = Literal["torch", "pcg64"]
TRAINING_SPEED_VERSION = "speed-1"
# what a model recorded before ``training_speed`` existed was trained with
BEFORE_SPEED: dict[str, Any] = {"precision": "fp32", "dropout": "torch", "version": "none"}


def cpu_supports_bf16() -> bool:
    """oneDNN can run bf16 convolutions and matmuls natively on this CPU (AVX-512 BF16 or AMX;
    without them PyTorch emulates bf16 and it is slower than fp32)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def supported_precision(device: torch.device) -> Precision:
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_supports_bf16() else "fp32"
    return "fp32"


class FastDropout(nn.Dropout):
    """``nn.Dropout`` whose training masks come from a NumPy PCG64 generator (``seed``): each
    element kept with probability ``1 - p`` and scaled by ``1 / (1 - p)``, as PyTorch's. No
    parameters or buffers: the weights, the exported program and evaluation are unchanged."""

    def __init__(self, p: float, seed: int) -> None:
        super().__init__(p)
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or not torch.is_grad_enabled():
            return super().forward(x)
        keep = 1.0 - self.p
        if keep == 0:
            return x * 0
        uniform = torch.from_numpy(self.rng.random(x.numel(), dtype=np.float32)).view(x.shape)
        noise = torch.where(uniform < keep, 1.0 / keep, 0.0).to(x.device, x.dtype)
        return x * noise


@dataclass(frozen=True)
class TrainingSpeed:
    precision: Precision = "fp32"
    dropout: DropoutMasks = "torch"
    device_type: str = "cpu"
    version: str = TRAINING_SPEED_VERSION

    def autocast(self) -> AbstractContextManager[object]:
        if self.precision == "bf16":
            return torch.autocast(self.device_type, dtype=torch.bfloat16)
        return nullcontext()

    def prepare(self, model: nn.Module, seed: int = 0) -> nn.Module:
        """``model`` with its dropout layers drawing masks the chosen way (in place)."""
        if self.dropout == "pcg64":
            seeds = np.random.SeedSequence([seed, 0x5D]).spawn(64)
            swaps = [
                (parent, name, child)
                for parent in model.modules()
                for name, child in parent.named_children()
                if type(child) is nn.Dropout
            ]
            for index, (parent, name, child) in enumerate(swaps):
                state = int(seeds[index].generate_state(1, np.uint64)[0])
                setattr(parent, name, FastDropout(child.p, state))
        return model

    def record(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.precision}, dropout masks {self.dropout} ({self.version})"


def training_speed(
    config: TrainConfig,
    device: torch.device,
    fast: bool = True,
    recorded: dict[str, Any] | None = None,
) -> TrainingSpeed:
    """The step's settings: ``recorded`` ones (a reproduction) as they were, else the fast
    ones where ``fast`` and the profile allows mixed precision, else fp32 with PyTorch's
    masks."""
    if recorded is not None:
        values = {**BEFORE_SPEED, **recorded}
        return TrainingSpeed(values["precision"], values["dropout"], device.type, values["version"])
    if not fast or not config.mixed_precision:
        return TrainingSpeed("fp32", "torch", device.type, "none")
    return TrainingSpeed(supported_precision(device), "pcg64", device.type)
