"""The first lines users read: metrics with their intervals per recording and per participant,
the gate's verdict in words (a first champion says non-inferiority did not apply), key columns
first, and rejections counted by file, not by the rows that only echo a rejected file."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
from upath import UPath

from spira_assets.assets.headlines import (
    LINE_CHARS,
    gate_verdict,
    key_columns_first,
    metric_lines,
    rejection_summary,
    short_lines,
)
from spira_assets.evaluation.comparison import Comparison
from spira_assets.evaluation.gate import GateConfig, GateDecision
from spira_assets.storage.lake import Lake
from spira_assets.storage.tables import EVALUATION_METRICS, MODEL_VERSIONS


def test_the_metrics_headline_gives_every_key_figure_with_its_interval_at_both_levels(
    champion_root: Path,
) -> None:
    lake = Lake(UPath(champion_root / "lake"))
    version = lake.read_table(MODEL_VERSIONS)["model_version"][0]
    metrics = lake.read_part(EVALUATION_METRICS, version)
    lines = metric_lines(metrics)
    assert lines[0].startswith("per recording: AUROC "), lines
    recording = "\n".join(line for line in lines if line.startswith("per recording: "))
    participant = "\n".join(line for line in lines if line.startswith("per participant: "))
    assert len(lines) == 6, lines
    for part in (recording, participant):
        for name in ("AUROC", "sensitivity", "specificity"):
            assert name in part, (name, part)
        assert part.count("(95% CI ") == 3, part  # each figure has its interval (or says why)


def _decision(passed: bool, reasons: list[str]) -> GateDecision:
    return GateDecision(passed=passed, reasons=reasons, criteria=[])


def test_a_first_champion_says_non_inferiority_did_not_apply() -> None:
    gate = GateConfig()
    first = gate_verdict("m1", _decision(True, []), [], None, gate)
    assert first.startswith("PROMOTED: m1")
    assert "first champion: non-inferiority did not apply" in first
    refused = gate_verdict("m1", _decision(False, ["test AUROC 0.61 < 0.80"]), [], None, gate)
    assert refused.startswith("REFUSED: test AUROC 0.61 < 0.80")
    head = Comparison(
        reference_version="m0",
        role="champion",
        participants=30,
        difference=0.012,
        ci_low=-0.02,
        ci_high=0.04,
    )
    second = gate_verdict("m1", _decision(True, []), [head], "m0", gate)
    assert "non-inferiority did not apply" not in second
    assert "AUROC difference vs champion m0: +0.012 (95% CI -0.020 to +0.040" in second
    kept = gate_verdict("m1", _decision(True, []), [head], "m1", gate)
    assert kept.startswith("kept: m1 is already the champion")


def test_key_columns_come_first() -> None:
    frame = pl.DataFrame(
        {"value": [1.0], "threshold": [0.8], "criterion": ["auroc"], "passed": [True]}
    )
    assert key_columns_first(frame, ("criterion", "passed", "absent")).columns == [
        "criterion",
        "passed",
        "value",
        "threshold",
    ]


def test_rejections_are_counted_by_file_not_by_the_rows_that_echo_them() -> None:
    rows = pl.DataFrame(
        {
            "stage": ["raw_audio"] * 5 + ["validated_metadata"] * 5,
            "rule": ["clipping"] * 5 + ["audio_rejected"] * 4 + ["age_out_of_range"],
        }
    )
    text, items = rejection_summary(rows, "validated_metadata")
    assert items == 6  # 5 files + 1 row of its own; the 4 echoes are not rejections
    assert text == (
        "5 file(s) and 1 metadata row(s); 4 more row(s) only point at a rejected file "
        "(audio_rejected)"
    )


def test_the_reports_index_marks_the_champion_and_links_each_report() -> None:
    from datetime import UTC, datetime

    from spira_assets.evaluation.reports_index import reports_index

    decisions = pl.DataFrame(
        {
            "candidate_version": ["aaa", "bbb", "aaa"],
            "passed": [True, False, True],
            "candidate_auroc": [0.91, 0.72, 0.91],
            "decided_at": [datetime(2026, 1, d, tzinfo=UTC) for d in (1, 2, 3)],
        }
    )
    page = reports_index(decisions, "aaa")
    rows = page.split("<tr>")[2:]
    assert len(rows) == 2  # one row per version, its latest decision
    champion_row = next(r for r in rows if "<code>aaa</code>" in r)
    other_row = next(r for r in rows if "<code>bbb</code>" in r)
    assert "<strong>champion</strong>" in champion_row and "champion" not in other_row
    assert "href='aaa/model_card.html'" in champion_row and "refused" in other_row
    assert "No champion yet" in reports_index(decisions, None)


def test_long_verdicts_are_shown_in_short_lines_that_say_the_same() -> None:
    """The UI cut a one-line headline mid-figure at 1600 px (issue 31): every line is short, in
    the same words, and Markdown's special characters in a reason stay as written."""
    gate = GateConfig()
    head = Comparison(
        reference_version="0123456789abcdef",
        role="champion",
        participants=30,
        difference=-0.012,
        ci_low=-0.04,
        ci_high=0.02,
    )
    reasons = ["subgroup sex_f AUROC 0.61 < 0.70", "test sensitivity 0.52 < 0.80 *clean*"]
    verdict = gate_verdict("m1", _decision(False, reasons), [head], "m0", gate)
    shown = short_lines(verdict).value
    lines = shown.split("  \n")
    assert len(lines) > verdict.count("; ") + 1  # a clause longer than a line is wrapped too
    assert all(len(line.replace("\\", "")) <= LINE_CHARS for line in lines), lines
    unescaped = re.sub(r"\\(.)", r"\1", " ".join(lines))
    assert unescaped == verdict.replace("; ", " "), unescaped
    assert "sex\\_f" in shown and "\\*clean\\*" in shown  # no emphasis swallowed
    assert short_lines("-0.5 to 1. below").value == "\\-0.5 to 1. below"  # not a list item
