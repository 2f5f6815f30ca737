"""Training and evaluation protocols: the platform's default and SPIRA's published experiment.

``spira-acl2021`` is experiment 3.5 of Casanova et al. (ACL Findings 2021) as the public code
(Edresson/SPIRA-ACL2021, ``Experiments/configs/exp3.5.json``, ``train.py``, ``test.py``,
``utils/dataset.py``) runs it; every value below cites where it comes from (docs/MODELS.md has
the parity table). ``platform`` is what works best here, and differs on purpose where the
table says why.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from spira_assets.features.augment_config import NOISE_PEAK_RANGE, AugmentConfig
from spira_assets.ml.train_config import TrainConfig

PLATFORM = "platform"
SPIRA_ACL2021 = "spira-acl2021"

PROFILES: dict[str, TrainConfig] = {
    PLATFORM: TrainConfig(),
    SPIRA_ACL2021: TrainConfig(
        profile=SPIRA_ACL2021,
        norm="group",  # "model_name": "spiraconv_v2"
        dropout=0.7,  # models/spiraconv.py
        learning_rate=1e-3,  # train_config.learning_rate
        weight_decay=0.01,  # train_config.weight_decay (Adam, coupled L2)
        warmup_steps=1000,  # train_config.warmup_steps with lr_decay (NoamLR)
        batch_size=5,  # train_config.batch_size: recordings, all their windows
        drop_last=True,  # DataLoader(drop_last=True)
        max_epochs=1000,  # train_config.epochs
        patience=0,  # early_stop_epochs: 0
        window_s=4.0,  # dataset.window_len
        step_s=1.0,  # dataset.step
        window_rule="spira",  # range(window, len, step): no end-flush window, short clips out
        transform_unit="window",  # the MFCC runs on each window slice
        validation_noise=True,  # the eval loader inserts training noise too
        validate_every_steps=500,  # checkpoint_interval
        threshold_rule="fixed",  # test.py: torch.round(mean probability)
        fixed_threshold=0.5,
        keep_all_seeds=True,  # results are reported per seed and as their mean
        augment=AugmentConfig(
            k_control=3,  # num_noise_control
            k_patient=3,  # num_noise_patient
            min_peak=NOISE_PEAK_RANGE[0],  # noise_min_amp
            max_peak=NOISE_PEAK_RANGE[1],  # noise_max_amp
            scale="signed_max",  # reduct_factor = max_amp / noise_wav.max()
            mixup_alpha=0.0,  # no mixup in this code base
            skip_noise_list_header=True,  # pd.read_csv(noise_data.csv): line 1 is the header
        ),
        mixed_precision=False,  # fp32 throughout (no autocast in train.py)
        input_scaling="none",  # the MFCCs go into the network as computed
        calibration="none",  # the mean window probability is the score
    ),
}
PROFILE_SEEDS = {PLATFORM: (42, 43, 46), SPIRA_ACL2021: (42, 43, 46)}


@dataclass(frozen=True)
class PublishedNoisyTest:
    """SPIRA's noisy test (test.py, ``--num_noise_control 1 --num_noise_patient 0``): one slice
    on each control, none on patients (whose hospital recordings already carry ward noise),
    one draw per recording from ``random.seed(42 * index)`` with the 0-based row index in the
    test list, the training noise files, signed-maximum scaling; accuracy at 0.5."""

    k_control: int = 1
    k_patient: int = 0
    seed: int = 42
    threshold: float = 0.5

    def augment(self) -> AugmentConfig:
        return AugmentConfig(
            k_control=self.k_control,
            k_patient=self.k_patient,
            min_peak=NOISE_PEAK_RANGE[0],
            max_peak=NOISE_PEAK_RANGE[1],
            scale="signed_max",
        )


PUBLISHED_NOISY_TEST = PublishedNoisyTest()


class UnknownProfileError(ValueError):
    """A profile name that is not one of ``PROFILES``."""


def profile_config(name: str, **overrides: Any) -> TrainConfig:
    """The profile's TrainConfig with ``overrides`` (fields left None keep the profile's
    value); augment fields may be overridden by name (``k_control``...)."""
    if name not in PROFILES:
        raise UnknownProfileError(f"profile {name!r}: expected one of {sorted(PROFILES)}")
    base = PROFILES[name]
    augment_fields = set(AugmentConfig.__dataclass_fields__)
    given = {k: v for k, v in overrides.items() if v is not None}
    augment = replace(base.augment, **{k: v for k, v in given.items() if k in augment_fields})
    rest = {k: v for k, v in given.items() if k not in augment_fields}
    return replace(base, **rest, augment=augment)
