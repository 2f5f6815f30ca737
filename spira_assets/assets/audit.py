"""The audit bundle of each promoted model, written by the ``champion`` step beside the model
card (``reports/<version>/audit_bundle.zip``, served with the reports); the core is
``monitoring/audit.py``, ``spira audit-bundle`` writes and verifies one by hand."""

from pathlib import Path

import dagster as dg

import spira_assets
from spira_assets.assets.links import report_url
from spira_assets.assets.tables import metadata_text
from spira_assets.resources import StorageResource

BUNDLE_FILE = "audit_bundle.zip"


def with_audit_bundle(
    context: dg.AssetExecutionContext, storage: StorageResource, result: dg.MaterializeResult
) -> dg.MaterializeResult:
    """``result`` of the gate, with the bundle written and linked when the model was promoted
    (a refused candidate gets none: ``spira audit-bundle`` still writes one on demand)."""
    from spira_assets.monitoring.audit import bundle_contents, write_bundle
    from spira_assets.storage.lake import Lake

    if metadata_text(result, "decision") != "passed":
        return result
    layout = storage.layout()
    version = metadata_text(result, "candidate_version")
    layout.fetch(f"models/{version}")
    code_root = Path(spira_assets.__file__).parent.parent
    files = bundle_contents(layout.local_root, Lake(layout.lake), version, code_root, False)
    out = write_bundle(files, version, layout.local(f"reports/{version}/{BUNDLE_FILE}"))
    layout.publish(f"reports/{version}/{BUNDLE_FILE}")
    context.log.info(f"audit bundle of {version}: {out} ({len(files)} files)")
    return dg.MaterializeResult(
        asset_key=result.asset_key,
        metadata={
            **(result.metadata or {}),
            "audit_bundle": report_url(version, BUNDLE_FILE),
            "audit_bundle_file": dg.MetadataValue.path(str(out)),
        },
        check_results=result.check_results,
        data_version=result.data_version,
    )
