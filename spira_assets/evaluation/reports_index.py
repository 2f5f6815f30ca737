"""``reports/index.html``: the page the reports server opens on (no Dagster).

Without it the server shows a bare listing of version hashes; with it, one row per gated model
version, newest first, the champion marked, each with its evaluation report and model card.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import polars as pl

INDEX = "index.html"


def reports_index(decisions: pl.DataFrame, champion: str | None) -> str:
    """HTML from the ``promotions`` rows (the latest decision of each candidate is shown)."""
    latest = decisions.sort("decided_at", descending=True).unique(
        "candidate_version", keep="first", maintain_order=True
    )
    rows = []
    for row in latest.iter_rows(named=True):
        version = str(row["candidate_version"])
        mark = "<strong>champion</strong>" if version == champion else ""
        auroc = row["candidate_auroc"]
        verdict = "passed" if row["passed"] else "refused"
        rows.append(
            f"<tr><td>{mark}</td><td><code>{escape(version)}</code></td>"
            f"<td>{'' if auroc is None else f'{auroc:.3f}'}</td><td>{verdict}</td>"
            f"<td>{escape(str(row['decided_at'])[:19])}</td>"
            f"<td><a href='{escape(version)}/evaluation.html'>evaluation</a></td>"
            f"<td><a href='{escape(version)}/model_card.html'>model card</a></td></tr>"
        )
    head = (
        f"<p>Champion: <code>{escape(champion)}</code> "
        f"(<a href='{escape(champion)}/model_card.html'>model card</a>)</p>"
        if champion
        else "<p>No champion yet.</p>"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>SPIRA reports</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}</style>"
        f"</head><body><h1>SPIRA model reports</h1>{head}<table><tr><th></th>"
        "<th>model version</th><th>test AUROC (clean, per recording)</th><th>gate</th>"
        "<th>decided at (UTC)</th><th></th><th></th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )


def write_reports_index(reports: Path, decisions: pl.DataFrame, champion: str | None) -> Path:
    reports.mkdir(parents=True, exist_ok=True)
    path = reports / INDEX
    path.write_text(reports_index(decisions, champion), encoding="utf-8")
    return path
