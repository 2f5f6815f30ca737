"""What `spira demo` prints: counts, quarantine and defect verification, from the warehouse."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from spira_assets.demo.verify import Verification, load_manifest, verify_batch
from spira_assets.environment import pseudonym_key
from spira_assets.privacy import Pseudonymizer
from spira_assets.storage.lake import Lake
from spira_assets.storage.layout import DataLayout
from spira_assets.storage.warehouse import Warehouse


@dataclass(frozen=True)
class BatchSummary:
    batch_id: str
    files_in: int
    files_accepted: int
    rows_in: int
    rows_accepted: int
    rows_quarantined: int
    patients: int
    controls: int
    hours: float
    feature_recordings: int
    windows: int
    verification: Verification | None


def summarize(
    layout: DataLayout, batch_ids: list[str], config_hash: str
) -> tuple[list[BatchSummary], pl.DataFrame]:
    pseudonymizer = Pseudonymizer(pseudonym_key(None, layout.local_root))
    warehouse = Warehouse(layout.warehouse, Lake(layout.lake))
    ids = sorted(batch_ids)
    files = warehouse.query(
        "SELECT batch_id, count(*) AS files_in, count(*) FILTER (accepted) AS accepted "
        "FROM raw_audio WHERE batch_id IN (SELECT unnest(?)) GROUP BY batch_id",
        [ids],
    )
    rows = warehouse.query(
        "SELECT batch_id, count(*) AS accepted, count(DISTINCT participant) FILTER (label = 1) "
        "AS patients, count(DISTINCT participant) FILTER (label = 0) AS controls, "
        "sum(duration_s) / 3600 AS hours FROM validated_metadata "
        "WHERE batch_id IN (SELECT unnest(?)) GROUP BY batch_id",
        [ids],
    )
    features = warehouse.query(
        "SELECT batch_id, count(*) AS recordings, sum(windows) AS windows "
        "FROM spectrogram_features WHERE batch_id IN (SELECT unnest(?)) AND config_hash = ? "
        "GROUP BY batch_id",
        [ids, config_hash],
    )
    quarantine = warehouse.query(
        'SELECT batch_id, stage, item, row_number, "column", rule, detail FROM quarantine '
        "WHERE batch_id IN (SELECT unnest(?)) ORDER BY batch_id, stage, row_number, item",
        [ids],
    )
    by_rule = quarantine.group_by("stage", "rule").len("records").sort("records", descending=True)
    summaries = []
    for batch_id in ids:
        f = files.filter(pl.col("batch_id") == batch_id)
        r = rows.filter(pl.col("batch_id") == batch_id)
        q = quarantine.filter(pl.col("batch_id") == batch_id)
        ft = features.filter(pl.col("batch_id") == batch_id)
        bad_rows = (
            q.filter((pl.col("stage") == "validated_metadata") & pl.col("row_number").is_not_null())
            .get_column("row_number")
            .n_unique()
        )
        accepted_rows = int(r.get_column("accepted")[0]) if r.height else 0
        manifest = load_manifest(layout.batch_dir(batch_id))
        summaries.append(
            BatchSummary(
                batch_id=batch_id,
                files_in=int(f.get_column("files_in")[0]) if f.height else 0,
                files_accepted=int(f.get_column("accepted")[0]) if f.height else 0,
                rows_in=accepted_rows + bad_rows,
                rows_accepted=accepted_rows,
                rows_quarantined=bad_rows,
                patients=int(r.get_column("patients")[0]) if r.height else 0,
                controls=int(r.get_column("controls")[0]) if r.height else 0,
                hours=float(r.get_column("hours")[0] or 0.0) if r.height else 0.0,
                feature_recordings=int(ft.get_column("recordings")[0]) if ft.height else 0,
                windows=int(ft.get_column("windows")[0] or 0) if ft.height else 0,
                verification=verify_batch(manifest, q, pseudonymizer) if manifest else None,
            )
        )
    return summaries, by_rule
