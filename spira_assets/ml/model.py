"""SpiraConv: the CNN SPIRA trains on MFCC "images" (1 x time x coefficients).

Version 2 (default) uses GroupNorm, version 1 BatchNorm (SPIRA.md). Four blocks of
Conv2d -> norm -> Mish (-> MaxPool(2, 1), as ``TimePool``) -> Dropout(0.7), kernels along
time only, then flatten -> Linear(100) -> Mish -> Dropout -> Linear(1). The network returns
a logit; the loss is BCE on it (``BCEWithLogitsLoss``, numerically safer than sigmoid + BCE)
and ``predict`` applies the sigmoid.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

Norm = Literal["group", "batch"]
# (in, out, kernel along time, dilation along time, groups for GroupNorm, pool)
BLOCKS = (
    (1, 32, 7, 2, 16, True),
    (32, 16, 5, 2, 8, True),
    (16, 8, 3, 2, 4, True),
    (8, 4, 2, 1, 2, False),
)


class _PairMax(torch.autograd.Function):
    """Training path of ``TimePool``: ``torch.maximum`` of the even and the odd frames, and in
    the backward pass each gradient routed to the frame PyTorch's ``max_pool2d`` picks (the odd
    one when it is larger or NaN, else the even one: ties go to the first), bit for bit. About
    15 % faster than PyTorch's pooling kernel forward and backward on the first block."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[2]
        rows = length // 2 * 2
        pairs = x[:, :, :rows].unflatten(2, (rows // 2, 2))
        even, odd = pairs.select(3, 0), pairs.select(3, 1)
        odd_wins = odd.gt(even).logical_or_(odd.isnan())
        ctx.save_for_backward(torch.stack((odd_wins.logical_not(), odd_wins), dim=3))
        ctx.length = length
        return torch.maximum(even, odd)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (routes,) = ctx.saved_tensors
        full = (grad.unsqueeze(3) * routes).flatten(2, 3)
        if full.shape[2] != ctx.length:  # the odd last frame gets no gradient
            full = nn.functional.pad(full, (0, 0, 0, ctx.length - full.shape[2]))
        return full


class TimePool(nn.Module):
    """``nn.MaxPool2d(kernel_size=(2, 1))``: the larger of each pair of consecutive frames (a
    last odd frame dropped). Without autograd (evaluation, scoring, serving, validation) it is
    ``torch.maximum`` of the even and the odd frames: the same values, NaN propagated alike,
    and on CPU about 7x faster than PyTorch's pooling kernel, which took a third of a forward
    pass (docs/PERFORMANCE.md "Training"). With autograd it is that kernel itself, so training
    routes gradients exactly as before (the first of two equal frames gets it) and weights stay
    bit-identical: in training mode through ``_PairMax`` (the same values and gradients as that
    kernel, faster), otherwise (``torch.export``) the kernel itself. No parameters: the state
    dict is unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            if self.training and x.requires_grad:
                return _PairMax.apply(x)
            return nn.functional.max_pool2d(x, kernel_size=(2, 1))  # export, eval with grad
        rows = x.shape[2] // 2 * 2
        return torch.maximum(x[:, :, 0:rows:2], x[:, :, 1:rows:2])


def _block(
    cin: int,
    cout: int,
    kernel: int,
    dilation: int,
    groups: int,
    pool: bool,
    norm: Norm,
    dropout: float,
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel_size=(kernel, 1), dilation=(dilation, 1)),
        nn.GroupNorm(groups, cout) if norm == "group" else nn.BatchNorm2d(cout),
        nn.Mish(),
    ]
    if pool:
        layers.append(TimePool())
    layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class Standardize(nn.Module):
    """Per-coefficient standardization, ``(x - mean) / std``, with statistics of the training
    split set once before training (``ml/train.py`` ``input_statistics``). Buffers, not
    parameters: they are saved in the weights and the exported program, so every scorer
    applies exactly the training scaling, and the optimizer never moves them."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def set(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        with torch.no_grad():
            self.mean.copy_(mean)
            self.std.copy_(torch.clamp(std, min=1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class SpiraConv(nn.Module):
    def __init__(
        self,
        frames: int = 400,
        n_features: int = 40,
        norm: Norm = "group",
        dropout: float = 0.7,
        scaled: bool = False,
    ) -> None:
        super().__init__()
        self.frames, self.n_features = frames, n_features
        # the platform profile standardizes its inputs; SPIRA's published model does not
        self.scale: Standardize | None = Standardize(n_features) if scaled else None
        self.conv = nn.Sequential(*(_block(*spec, norm=norm, dropout=dropout) for spec in BLOCKS))
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, 1, frames, n_features)).numel()
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, 100), nn.Mish(), nn.Dropout(dropout), nn.Linear(100, 1)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features``: batch x frames x coefficients -> logits (batch)."""
        if self.scale is not None:
            features = self.scale(features)
        return self.head(self.conv(features.unsqueeze(1))).squeeze(1)

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self(features))
