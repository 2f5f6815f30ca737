"""Compare what the pipeline quarantined with what the demo generator injected."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import polars as pl
from upath import UPath

from spira_assets.demo.corpus import MANIFEST_FILE
from spira_assets.demo.defects import AUDIO_STAGE
from spira_assets.privacy import Pseudonymizer, Redactor


@dataclass
class Verification:
    batch_id: str
    defects: int = 0
    caught: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def load_manifest(batch_dir: UPath) -> dict[str, object] | None:
    path = batch_dir / MANIFEST_FILE
    if not path.exists():
        return None
    loaded: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def _records_for(
    defect: dict[str, object], quarantine: pl.DataFrame, withheld: Redactor | None
) -> pl.DataFrame:
    path = str(defect["audio_path"])
    row = defect.get("row_number")
    # as stored: id-shaped tokens of a name are redacted (a random hex name can look like one),
    # a name no row refers to is withheld
    names = [path, Redactor().path(path)] + ([withheld.path(path)] if withheld else [])
    by_file = pl.col("item").is_in(names)
    by_row = pl.col("row_number") == row if row is not None else pl.lit(False)
    return quarantine.filter(
        pl.when(pl.col("stage") == AUDIO_STAGE).then(by_file).otherwise(by_file | by_row)
    )


def verify_batch(
    manifest: dict[str, object],
    quarantine: pl.DataFrame,
    pseudonymizer: Pseudonymizer | None = None,
) -> Verification:
    """Every injected defect caught with exactly its expected rules; no other rejection.
    With the batch's ``pseudonymizer``, a file whose name was withheld (no row names it) is
    recognized by its keyed tag."""
    withheld = Redactor.withholding(pseudonymizer) if pseudonymizer else None
    result = Verification(str(manifest["batch_id"]))
    explained = pl.Series("explained", [False] * quarantine.height)
    defects = manifest["defects"]
    assert isinstance(defects, list)
    for defect in defects:
        expected = {(e["stage"], e["rule"], e["column"]) for e in defect["expected"]}
        records = _records_for(defect, quarantine.with_row_index("__i"), withheld)
        actual = {(s, r, c) for s, r, c in records.select("stage", "rule", "column").iter_rows()}
        result.defects += 1
        if actual == expected:
            result.caught += 1
        else:
            result.problems.append(
                f"{defect['kind']} in {defect['audio_path']}: "
                f"expected {sorted(expected, key=str)}, "
                f"got {sorted(actual, key=str)}"
            )
        if records.height:
            explained = explained.scatter(records.get_column("__i").to_list(), True)
    for record in quarantine.filter(~explained).iter_rows(named=True):
        result.problems.append(
            f"unexpected rejection {record['stage']}/{record['rule']} of {record['item']}: "
            f"{record['detail']}"
        )
    return result
