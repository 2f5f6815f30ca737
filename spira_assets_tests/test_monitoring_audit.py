"""The audit bundle: the champion step writes one for the promoted model, ``spira audit-bundle``
writes one on demand with everything an auditor asks for, and ``--verify`` names a file that
was changed inside it."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from click.testing import CliRunner

from spira_assets.cli import main
from spira_assets.monitoring.audit import MANIFEST, verify_bundle


def rewrite(bundle: Path, out: Path, name: str, data: bytes) -> None:
    """A copy of the bundle with one file's content replaced (the manifest untouched)."""
    with zipfile.ZipFile(bundle) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.namelist():
            target.writestr(item, data if item == name else source.read(item))


def test_the_champion_step_bundles_the_promoted_model(champion_root: Path) -> None:
    (version,) = [p.name for p in (champion_root / "models").iterdir()]
    bundle = champion_root / "reports" / version / "audit_bundle.zip"
    assert verify_bundle(bundle.read_bytes()).ok
    with zipfile.ZipFile(bundle) as archive:
        names = set(archive.namelist())
        provenance = json.loads(archive.read("lineage/provenance.json"))
    assert {
        MANIFEST,
        "reports/model_card.md",
        "reports/evaluation.md",
        "gate/decisions.csv",
        "lineage/lineage.json",
        "training/training_curves.png",
        "live/live_performance.csv",
        "model/threshold.json",
    } <= names
    assert provenance["pseudonym_key_ids"] and provenance["batches"]
    assert "requirements.lock" in provenance["lock_files_sha256"]
    text = b"".join(zipfile.ZipFile(bundle).read(n) for n in names)
    assert b"SPIRA_PSEUDONYM_KEY" not in text and b"5850bb0da17eded8" not in text  # no key


def test_spira_audit_bundle_writes_and_verify_names_a_changed_file(
    tmp_path: Path, champion_root: Path
) -> None:
    (version,) = [p.name for p in (champion_root / "models").iterdir()]
    out = tmp_path / "bundle.zip"
    runner = CliRunner()
    made = runner.invoke(
        main, ["audit-bundle", version, "--out", str(out), "--data-dir", str(champion_root)]
    )
    assert made.exit_code == 0, made.output
    checked = runner.invoke(main, ["audit-bundle", "--verify", str(out)])
    assert checked.exit_code == 0 and "match" in checked.output
    tampered = tmp_path / "tampered.zip"
    rewrite(out, tampered, "gate/decisions.csv", b"candidate_version,passed\nx,true\n")
    failed = runner.invoke(main, ["audit-bundle", "--verify", str(tampered)])
    assert failed.exit_code != 0
    assert "changed: gate/decisions.csv" in failed.output
    assert "altered" in failed.output
    missing = runner.invoke(
        main, ["audit-bundle", "nosuchversion", "--out", str(tmp_path / "x.zip"),
               "--data-dir", str(champion_root)]
    )  # fmt: skip
    assert missing.exit_code != 0 and "no folder" in missing.output
