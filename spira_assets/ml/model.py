"""SpiraConv: the CNN SPIRA trains on MFCC "images" (1 x time x coefficients).

Version 2 (default) uses GroupNorm, version 1 BatchNorm (SPIRA.md). Four blocks of
Conv2d -> norm -> Mish (-> MaxPool(2, 1)) -> Dropout(0.7), kernels along time only, then
flatten -> Linear(100) -> Mish -> Dropout -> Linear(1). The network returns a logit; the loss
is BCE on it (``BCEWithLogitsLoss``, numerically safer than sigmoid + BCE) and ``predict``
applies the sigmoid.
"""

from __future__ import annotations

from typing import Literal

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
        layers.append(nn.MaxPool2d(kernel_size=(2, 1)))
    layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class SpiraConv(nn.Module):
    def __init__(
        self, frames: int = 400, n_features: int = 40, norm: Norm = "group", dropout: float = 0.7
    ) -> None:
        super().__init__()
        self.frames, self.n_features = frames, n_features
        self.conv = nn.Sequential(*(_block(*spec, norm=norm, dropout=dropout) for spec in BLOCKS))
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, 1, frames, n_features)).numel()
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, 100), nn.Mish(), nn.Dropout(dropout), nn.Linear(100, 1)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features``: batch x frames x coefficients -> logits (batch)."""
        return self.head(self.conv(features.unsqueeze(1))).squeeze(1)

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self(features))
