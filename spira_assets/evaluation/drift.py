"""Drift of a new batch against the data the champion was trained on (no Dagster).

Metadata: categories (class, sex and device per participant, utterance per recording) by the
Population Stability Index (PSI >= 0.25 is the usual "significant shift" line) confirmed by a
chi-square test at alpha = 0.01, since PSI ignores sample size; a category never seen in the
reference is named. Numbers (age per participant, duration per recording) by the
two-sample Kolmogorov-Smirnov statistic against its critical value at alpha = 0.01 for the two
sample sizes, so small batches are not flagged for sampling noise. Units matter: recordings of
one participant share age, sex and class, so those are compared per participant.
The tests are scipy's (``chi2_contingency`` on raw counts, ``ks_2samp``).
Features: per-coefficient shift of the batch mean in reference standard deviations, from the
stored per-batch statistics (pooled exactly), so drift never re-reads feature files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

PER_PARTICIPANT = ("label", "sex", "device")
PER_RECORDING = ("utterance",)
ALPHA = 0.01
KS_COLUMNS = (("age", "participant"), ("duration_s", "recording"))
KS_C_ALPHA = 1.628  # c(alpha) for alpha = 0.01
EPSILON = 1e-4  # floor for empty bins, so PSI stays finite


@dataclass(frozen=True)
class DriftThresholds:
    psi: float = 0.25
    feature_shift_sd: float = 0.5
    min_rows: int = 20  # smaller batches are too noisy to judge (reported, never failed)


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """PSI between two vectors of bin proportions (each summing to 1)."""
    ref = np.maximum(np.asarray(reference, dtype=np.float64), EPSILON)
    cur = np.maximum(np.asarray(current, dtype=np.float64), EPSILON)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _counts(values: pl.Series, categories: list[str]) -> np.ndarray:
    counts = values.cast(pl.String).value_counts()
    lookup = dict(
        zip(counts.get_column(values.name).to_list(), counts["count"].to_list(), strict=True)
    )
    return np.array([lookup.get(c, 0) for c in categories], dtype=np.int64)


def categorical_drift(reference: pl.Series, current: pl.Series) -> tuple[float, list[str], float]:
    """(PSI, categories present in the batch but never in the reference, p-value of the
    chi-square test of homogeneity). PSI alone is not sample-size aware: two samples of 24
    participants over 4 devices have an expected PSI near 0.25 by chance."""
    ref_values = set(reference.cast(pl.String).drop_nulls().to_list())
    cur_values = set(current.cast(pl.String).drop_nulls().to_list())
    categories = sorted(ref_values | cur_values)
    ref_counts, cur_counts = _counts(reference, categories), _counts(current, categories)
    value = psi(ref_counts / max(ref_counts.sum(), 1), cur_counts / max(cur_counts.sum(), 1))
    table = np.array([ref_counts, cur_counts])  # raw counts, as the test requires
    table = table[:, table.sum(axis=0) > 0]
    usable = table.shape[1] >= 2 and (table.sum(axis=1) > 0).all()
    from scipy.stats import chi2_contingency  # scipy: imported when a batch is compared

    p_value = float(chi2_contingency(table).pvalue) if usable else 1.0
    return value, sorted(cur_values - ref_values), p_value


def ks_drift(reference: pl.Series, current: pl.Series) -> tuple[float, float, float]:
    """(KS statistic D and p-value of scipy's two-sample test, and the asymptotic critical D at
    alpha = 0.01 for these sample sizes, shown beside D in the drift table)."""
    ref = reference.drop_nulls().to_numpy().astype(np.float64)
    cur = current.drop_nulls().to_numpy().astype(np.float64)
    if ref.size == 0 or cur.size == 0:
        return float("nan"), 1.0, float("nan")
    from scipy.stats import ks_2samp

    result = ks_2samp(ref, cur)
    critical = KS_C_ALPHA * float(np.sqrt((ref.size + cur.size) / (ref.size * cur.size)))
    return float(result.statistic), float(result.pvalue), critical


def _per_participant(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.group_by("participant").agg(pl.col("label", "sex", "age", "device").first())


def metadata_drift(
    reference: pl.DataFrame, current: pl.DataFrame, thresholds: DriftThresholds
) -> pl.DataFrame:
    """One row per column: statistic, value, threshold, drifted, detail. Frames have one row
    per recording with participant, label, sex, age, device, utterance, duration_s."""
    units = {
        "participant": (_per_participant(reference), _per_participant(current)),
        "recording": (reference, current),
    }
    rows = []
    significant = []
    for column in (*PER_PARTICIPANT, *PER_RECORDING):
        ref, cur = units["participant" if column in PER_PARTICIPANT else "recording"]
        value, unseen, p_value = categorical_drift(ref.get_column(column), cur.get_column(column))
        detail = f"chi-square p={p_value:.2g}" + (
            f"; new values: {', '.join(unseen)}" if unseen else ""
        )
        rows.append(("metadata", column, "psi", value, thresholds.psi, detail))
        significant.append(p_value < ALPHA)
    for column, unit in KS_COLUMNS:
        ref, cur = units[unit]
        statistic, p_value, critical = ks_drift(ref.get_column(column), cur.get_column(column))
        ref_mean = float(np.nanmean(ref.get_column(column).cast(pl.Float64).to_numpy()))
        cur_mean = float(np.nanmean(cur.get_column(column).cast(pl.Float64).to_numpy()))
        detail = f"KS p={p_value:.2g}; mean {ref_mean:.1f} -> {cur_mean:.1f}"
        rows.append(("metadata", column, "ks_d", statistic, critical, detail))
        significant.append(p_value < ALPHA)
    frame = _frame(rows, current.height >= thresholds.min_rows)
    return frame.with_columns(pl.col("drifted") & pl.Series(significant))


def pooled_stats(stats: pl.DataFrame) -> pl.DataFrame:
    """Per coefficient mean and standard deviation over several batches' statistics,
    weighted by frames (exact pooling of means and variances)."""
    return (
        stats.with_columns(
            (pl.col("std") ** 2 + pl.col("mean") ** 2).alias("second_moment"),
        )
        .group_by("coefficient")
        .agg(
            ((pl.col("mean") * pl.col("frames")).sum() / pl.col("frames").sum()).alias("mean"),
            ((pl.col("second_moment") * pl.col("frames")).sum() / pl.col("frames").sum()).alias(
                "m2"
            ),
        )
        .with_columns((pl.col("m2") - pl.col("mean") ** 2).clip(lower_bound=0).sqrt().alias("std"))
        .select("coefficient", "mean", "std")
        .sort("coefficient")
    )


def feature_shift(reference_stats: pl.DataFrame, batch_stats: pl.DataFrame) -> pl.DataFrame:
    """Per coefficient: |batch mean - reference mean| / reference std."""
    ref = pooled_stats(reference_stats)
    cur = batch_stats.select("coefficient", pl.col("mean").alias("batch_mean"))
    return (
        ref.join(cur, on="coefficient")
        .with_columns(
            (
                (pl.col("batch_mean") - pl.col("mean")).abs() / pl.col("std").clip(lower_bound=1e-6)
            ).alias("shift_sd")
        )
        .sort("coefficient")
    )


def feature_drift(
    reference_stats: pl.DataFrame,
    batch_stats: pl.DataFrame,
    thresholds: DriftThresholds,
    judgeable: bool = True,
) -> pl.DataFrame:
    shifts = feature_shift(reference_stats, batch_stats)
    rows = [
        ("features", f"coefficient_{c:02d}", "shift_sd", s, thresholds.feature_shift_sd, "")
        for c, s in zip(shifts["coefficient"].to_list(), shifts["shift_sd"].to_list(), strict=True)
    ]
    return _frame(rows, judgeable)


def compare_with_reference(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    thresholds: DriftThresholds,
    reference_stats: pl.DataFrame,
    batch_stats: pl.DataFrame | None,
) -> pl.DataFrame:
    """Every drift statistic of a batch against the champion's training data: metadata always,
    features when the batch has statistics under the reference's feature configuration
    (``batch_stats``; judged only when the batch has ``min_rows`` recordings)."""
    parts = [metadata_drift(reference, current, thresholds)]
    if batch_stats is not None:
        judgeable = current.height >= thresholds.min_rows
        parts.append(feature_drift(reference_stats, batch_stats, thresholds, judgeable))
    return pl.concat(parts)


def drifted_statements(result: pl.DataFrame) -> list[str]:
    """One line per drifted statistic: its value against its threshold, and any detail."""
    return [
        f"{r['feature']} {r['statistic']}={r['value']:.3f} (threshold {r['threshold']:.3f})"
        + (f"; {r['detail']}" if r["detail"] else "")
        for r in result.filter(pl.col("drifted")).iter_rows(named=True)
    ]


def _frame(rows: list[tuple[str, str, str, float, float, str]], judgeable: bool) -> pl.DataFrame:
    frame = pl.DataFrame(
        rows,
        schema={
            "kind": pl.String(),
            "feature": pl.String(),
            "statistic": pl.String(),
            "value": pl.Float64(),
            "threshold": pl.Float64(),
            "detail": pl.String(),
        },
        orient="row",
    )
    return frame.with_columns(
        (pl.lit(judgeable) & (pl.col("value") >= pl.col("threshold")).fill_null(False)).alias(
            "drifted"
        )
    )


REFERENCE_COLUMNS = ("participant", "label", "sex", "age", "device", "utterance", "duration_s")


def reference_recordings(recordings: pl.DataFrame, batches: list[str]) -> pl.DataFrame:
    """The recordings of the champion's training batches, with what metadata drift compares."""
    return recordings.filter(pl.col("batch_id").is_in(batches)).select(
        pl.col("batch_id").alias("reference_batch"), *REFERENCE_COLUMNS
    )


def reference_features(stats: pl.DataFrame, batches: list[str]) -> pl.DataFrame:
    """Per coefficient statistics pooled over the reference batches, with their frame count
    (pooling them again with a batch's own is exact)."""
    chosen = stats.filter(pl.col("batch_id").is_in(batches))
    frames = chosen.group_by("coefficient").agg(pl.col("frames").sum())
    return pooled_stats(chosen).join(frames, on="coefficient").sort("coefficient")


def not_comparable(
    batch_id: str, champion: str | None, reference_model: str | None, reference_batches: list[str]
) -> str | None:
    """Why the batch's drift is not computed, or None when it is. A batch inside the champion's
    training data would be compared with data that contains it (no drift by construction); a
    reference made for another model than today's champion is out of date."""
    if champion is None:
        return f"{batch_id}: not computed, no champion yet (nothing to compare with)"
    if reference_model != champion:
        made_for = f"champion {reference_model}" if reference_model else "no champion"
        return (
            f"{batch_id}: not computed, the drift reference is out of date (made for "
            f"{made_for}, the champion is now {champion}): materialize drift_reference"
        )
    if batch_id in reference_batches:
        return (
            f"{batch_id}: not computed, the batch is in champion {champion}'s training data "
            "(compared with data that contains it, drift would say nothing)"
        )
    return None
