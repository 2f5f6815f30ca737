"""Drift statistics: PSI, KS against its critical value, pooled feature statistics."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from spira_assets.evaluation.drift import (
    DriftThresholds,
    categorical_drift,
    feature_drift,
    ks_drift,
    metadata_drift,
    pooled_stats,
    psi,
)


def _recordings(
    rng: np.random.Generator, n: int, age_mean: float, devices: list[str]
) -> pl.DataFrame:
    participants = n // 4
    ages = np.clip(rng.normal(age_mean, 14, participants), 18, 99).astype(int)
    rows = []
    for p in range(participants):
        device = devices[p % len(devices)]
        for r in range(4):
            rows.append(
                {
                    "participant": f"P-{age_mean}-{p}",
                    "label": p % 2,
                    "sex": "F" if p % 3 else "M",
                    "age": int(ages[p]),
                    "device": device,
                    "utterance": ["aceite", "parlenda", "sustentada", "sustentada"][r],
                    "duration_s": float(rng.uniform(3, 9)),
                }
            )
    return pl.DataFrame(rows)


def test_psi_is_zero_for_equal_shares_and_grows_with_shift() -> None:
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0.0
    small = psi(np.array([0.5, 0.5]), np.array([0.55, 0.45]))
    large = psi(np.array([0.5, 0.5]), np.array([0.9, 0.1]))
    assert 0 < small < 0.25 < large
    # hand-computed: (0.9-0.5) ln(0.9/0.5) + (0.1-0.5) ln(0.1/0.5)
    assert large == pytest.approx(0.4 * np.log(1.8) + -0.4 * np.log(0.2))


def test_categorical_drift_names_unseen_values() -> None:
    value, unseen, p_value = categorical_drift(
        pl.Series("device", ["web", "ios-app"] * 10), pl.Series("device", ["hospital-mic"] * 5)
    )
    assert unseen == ["hospital-mic"] and value > 0.25 and p_value < 0.01


def test_psi_alone_is_not_enough_for_small_samples() -> None:
    """Two samples of 24 participants from the same 4 devices: PSI can pass 0.25 by chance,
    the chi-square test says it is noise."""
    rng = np.random.default_rng(11)
    devices = ["android-app", "ios-app", "web", "whatsapp"]
    chance = 0
    for _ in range(200):
        ref = pl.Series("device", rng.choice(devices, 24))
        cur = pl.Series("device", rng.choice(devices, 24))
        value, _, p_value = categorical_drift(ref, cur)
        chance += value >= 0.25 and p_value < 0.01
    assert chance <= 4  # about alpha = 1% of 200


def test_ks_is_scipys_and_the_critical_value_scales_with_sample_size() -> None:
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 300), rng.normal(0.4, 1, 50)
    statistic, p_value, critical = ks_drift(pl.Series(a), pl.Series(b))
    assert (statistic, p_value) == (ks_2samp(a, b).statistic, ks_2samp(a, b).pvalue)
    assert critical == pytest.approx(1.628 * np.sqrt((300 + 50) / (300 * 50)))
    same = ks_drift(pl.Series(a[:150]), pl.Series(a[150:]))
    assert same[1] > 0.01  # the same population is not significant


def test_same_population_does_not_drift_but_shifted_age_and_devices_do() -> None:
    rng = np.random.default_rng(7)
    devices = ["android-app", "ios-app", "web", "whatsapp"]
    reference = _recordings(rng, 288, 50, devices)
    thresholds = DriftThresholds()
    same = metadata_drift(reference, _recordings(rng, 96, 50, devices), thresholds)
    assert not same["drifted"].any(), same
    older = metadata_drift(reference, _recordings(rng, 96, 80, devices), thresholds)
    assert older.filter(pl.col("drifted"))["feature"].to_list() == ["age"]
    one_device = metadata_drift(reference, _recordings(rng, 96, 50, ["whatsapp"]), thresholds)
    assert one_device.filter(pl.col("drifted"))["feature"].to_list() == ["device"]
    tiny = metadata_drift(reference, _recordings(rng, 8, 80, ["whatsapp"]), thresholds)
    assert not tiny["drifted"].any()  # too few rows to judge: reported, never failed


def test_pooled_stats_equal_the_statistics_of_all_frames() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(1, 2, (500, 3)), rng.normal(-1, 0.5, (300, 3))
    stats = pl.DataFrame(
        [
            {"coefficient": c, "mean": x[:, c].mean(), "std": x[:, c].std(), "frames": len(x)}
            for x in (a, b)
            for c in range(3)
        ]
    )
    pooled = pooled_stats(stats)
    both = np.concatenate([a, b])
    assert pooled["mean"].to_numpy() == pytest.approx(both.mean(axis=0))
    assert pooled["std"].to_numpy() == pytest.approx(both.std(axis=0))


def test_feature_drift_flags_the_shifted_coefficient() -> None:
    reference = pl.DataFrame(
        {"coefficient": [0, 1], "mean": [0.0, 5.0], "std": [1.0, 2.0], "frames": [100, 100]}
    )
    batch = pl.DataFrame({"coefficient": [0, 1], "mean": [0.1, 7.0]})
    result = feature_drift(reference, batch, DriftThresholds())
    assert result["value"].to_list() == pytest.approx([0.1, 1.0])
    assert result["drifted"].to_list() == [False, True]
