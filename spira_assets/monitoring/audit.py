"""The audit bundle of a model version: one zip an auditor can read without our tools.

It holds the model card and evaluation report (with their figures), the gate decisions that
judged the version and its comparisons, the lineage (data versions per batch, code version,
package versions, configuration, the pseudonym key id of its data, never the key, and the
SHA-256 of the lock file the platform was installed from), the training curves, and its live
performance so far; ``MANIFEST.json`` lists the SHA-256 of every other file. ``verify`` reads
a bundle back and names every file that was changed, removed or added since it was written.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from spira_assets.monitoring.tables import LIVE_PERFORMANCE
from spira_assets.storage.lake import Lake
from spira_assets.storage.tables import (
    AUDIO_16K,
    EVALUATION_COMPARISONS,
    EVALUATION_METRICS,
    PROMOTIONS,
)

MANIFEST = "MANIFEST.json"
BUNDLE_FORMAT = 1
MODEL_FILES = ("model_config.json", "threshold.json", "calibration.json", "summary.json")
LOCK_FILES = ("requirements.lock", "requirements-dev.lock")


class AuditBundleError(RuntimeError):
    """The version cannot be bundled (its folder is missing)."""


@dataclass
class Verification:
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    version: str = ""
    files: int = 0

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing or self.unlisted)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _csv(frame: pl.DataFrame) -> bytes:
    return frame.write_csv().encode()


def _lock_hashes(code_root: Path) -> dict[str, str]:
    """The lock files next to the package (a source checkout or the image)."""
    return {
        name: _sha256((code_root / name).read_bytes())
        for name in LOCK_FILES
        if (code_root / name).is_file()
    }


def bundle_contents(
    root: Path, lake: Lake, version: str, code_root: Path, with_live: bool = True
) -> dict[str, bytes]:
    """Every file of the bundle but the manifest, by its name in the archive. ``with_live``
    False: a model being promoted has served nothing yet (the gate's step does not read
    ``live_performance``)."""
    from spira_assets.plots import training_curves

    model = root / "models" / version
    if not (model / "lineage.json").is_file():
        raise AuditBundleError(
            f"model version {version} has no folder with a lineage under {root / 'models'}: "
            "pass a version spira_model trained (models/<version>/)"
        )
    files: dict[str, bytes] = {}
    reports = root / "reports" / version
    for path in sorted(reports.glob("*")) if reports.is_dir() else []:
        if path.is_file() and path.suffix != ".zip":  # not a bundle written there before
            files[f"reports/{path.name}"] = path.read_bytes()
    for name in MODEL_FILES:
        if (model / name).is_file():
            files[f"model/{name}"] = (model / name).read_bytes()
    lineage = json.loads((model / "lineage.json").read_text())
    batches = sorted(lineage.get("batches", []))
    recordings = lake.read_table(AUDIO_16K).filter(pl.col("batch_id").is_in(batches))
    key_ids = sorted(set(recordings.get_column("pseudonym_key_id").drop_nulls().to_list()))
    files["lineage/lineage.json"] = (model / "lineage.json").read_bytes()
    files["lineage/provenance.json"] = json.dumps(
        {
            "model_version": version,
            "batches": lineage.get("batches"),
            "code_version": lineage.get("code_version"),
            "packages": lineage.get("packages"),
            "pseudonym_key_ids": key_ids,  # names the key; the key itself is never stored
            "lock_files_sha256": _lock_hashes(code_root),
        },
        indent=2,
    ).encode()
    decisions = lake.read_table(PROMOTIONS).filter(pl.col("candidate_version") == version)
    files["gate/decisions.csv"] = _csv(decisions.sort("decided_at"))
    if lake.has_part(EVALUATION_COMPARISONS, version):
        files["gate/comparisons.csv"] = _csv(lake.read_part(EVALUATION_COMPARISONS, version))
    if lake.has_part(EVALUATION_METRICS, version):
        files["evaluation/metrics.csv"] = _csv(lake.read_part(EVALUATION_METRICS, version))
    summary = json.loads((model / "summary.json").read_text())
    histories = {int(s): [tuple(r) for r in h] for s, h in summary.get("histories", {}).items()}
    if histories:
        best = (int(summary["best_seed"]), int(summary["best_epoch"]))
        files["training/training_curves.png"] = training_curves(histories, best)
        files["training/histories.json"] = json.dumps(summary["histories"], indent=2).encode()
    live = (
        lake.read_table(LIVE_PERFORMANCE).filter(pl.col("model_version") == version)
        if with_live
        else LIVE_PERFORMANCE.empty()
    )
    files["live/live_performance.csv"] = _csv(live.sort("batch_id", "metric"))
    return files


def write_bundle(files: dict[str, bytes], version: str, out: Path) -> Path:
    """The zip with ``MANIFEST.json`` (SHA-256 of every file), written to a staging name and
    renamed, so a reader never sees half a bundle."""
    manifest = {
        "format": BUNDLE_FORMAT,
        "model_version": version,
        "created_at": datetime.now(UTC).isoformat(),
        "files": {name: _sha256(data) for name, data in sorted(files.items())},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(staging, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2))
        for name, data in sorted(files.items()):
            archive.writestr(name, data)
    staging.replace(out)
    return out


def verify_bundle(data: bytes) -> Verification:
    """Every file against the manifest: changed (other SHA-256), missing, or not listed."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = [n for n in archive.namelist() if n != MANIFEST]
        manifest = json.loads(archive.read(MANIFEST))
        listed: dict[str, str] = manifest["files"]
        result = Verification(version=str(manifest.get("model_version", "")), files=len(listed))
        for name in sorted(listed):
            if name not in names:
                result.missing.append(name)
            elif _sha256(archive.read(name)) != listed[name]:
                result.changed.append(name)
        result.unlisted = sorted(set(names) - set(listed))
    return result
