"""A candidate against the models that held the title, on people neither of them ever saw.

Each pair is scored on the recordings of the current split whose participants (and audio
content) are in neither model's training or validation data, each model through its own
window, feature and threshold settings; the AUROC difference gets a paired participant
bootstrap (same people, same draws for both). Where a reference cannot be scored, the
comparison says why: the gate refuses on it instead of skipping it. Each comparison counts the
patients and controls it rests on and the share of bootstrap draws that were defined: the gate
(``gate.comparison_shortfall``) judges whether that is evidence enough.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from pathlib import Path

import polars as pl
import torch

from spira_assets.evaluation.config import MIN_DEFINED_DRAWS
from spira_assets.evaluation.gate import Comparison, GateConfig, comparison_shortfall
from spira_assets.evaluation.metrics import aggregate, paired_difference
from spira_assets.ml.scoring import ModelNotEvaluable, ModelUnderTest
from spira_assets.ml.split import unseen_by
from spira_assets.storage.lake import Lake
from spira_assets.storage.layout import DataLayout
from spira_assets.storage.tables import EVALUATION_COMPARISONS


def _origins(subset: pl.DataFrame, candidate: ModelUnderTest, reference: ModelUnderTest) -> str:
    """How many compared participants were in each model's test split, or new to it."""

    def split_of(model: ModelUnderTest) -> dict[str, str]:
        return dict(model.split.select("participant", "split").unique("participant").rows())

    ours, theirs = split_of(candidate), split_of(reference)
    people = subset.get_column("participant").unique().to_list()
    counts = Counter((ours.get(p, "new"), theirs.get(p, "new")) for p in people)
    return "; ".join(
        f"candidate {a} & reference {b}: {n} participants" for (a, b), n in sorted(counts.items())
    )


def compare(
    candidate: ModelUnderTest,
    reference_version: str,
    role: str,
    pool: pl.DataFrame,
    root: Path,
    layout: DataLayout,
    lake: Lake,
    device: torch.device,
    resamples: int,
    min_defined: float = MIN_DEFINED_DRAWS,
) -> Comparison:
    """The candidate against one reference on the recordings of ``pool`` unseen by both."""
    try:
        reference = ModelUnderTest.load(layout, lake, reference_version)
    except (ModelNotEvaluable, FileNotFoundError, OSError) as error:
        return Comparison(reference_version, role, error=f"cannot be evaluated: {error}")
    subset = unseen_by(pool, candidate.split, reference.split)
    if subset.is_empty():
        return Comparison(
            reference_version,
            role,
            error="no recording of the current split is unseen by both models",
        )
    scored = [
        aggregate(
            model.score(model.recordings(subset, root, lake, layout), device),
            "recording",
            model.calibration,
        )
        for model in (candidate, reference)
    ]
    # under a stricter window rule one model may have no window for a short recording
    common = set(scored[0].get_column("recording")) & set(scored[1].get_column("recording"))
    scored = [s.filter(pl.col("recording").is_in(sorted(common))) for s in scored]
    paired = paired_difference(scored[0], scored[1], resamples=resamples, min_defined=min_defined)
    return Comparison(
        reference_version,
        role,
        paired.participants,
        paired.recordings,
        _origins(subset, candidate, reference),
        paired.candidate,
        paired.reference,
        paired.difference.value,
        paired.difference.low,
        paired.difference.high,
        None,
        paired.patients,
        paired.controls,
        paired.difference.defined,
    )


def comparisons_frame(
    candidate_version: str, comparisons: list[Comparison], config: GateConfig
) -> pl.DataFrame:
    """The ``evaluation_comparisons`` rows; ``error`` says why a comparison cannot support a
    decision: it failed, or it rests on too little evidence (``config``)."""
    rows = [
        {
            "batch_id": candidate_version,
            "model_version": candidate_version,
            **asdict(c),
            "error": c.error or comparison_shortfall(c, config),
        }
        for c in comparisons
    ]
    if not rows:
        return EVALUATION_COMPARISONS.empty()
    return EVALUATION_COMPARISONS.conform(
        pl.DataFrame(rows, schema_overrides={"error": pl.String}, infer_schema_length=None)
    )
