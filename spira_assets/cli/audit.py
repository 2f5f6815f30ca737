"""``spira audit-bundle``: one archive per model version for an auditor, and its check."""

from __future__ import annotations

from pathlib import Path

import click

from spira_assets.cli.app import DATA_DIR_OPTION, CliError, _layout, _local_root, main


@main.command("audit-bundle")
@click.argument("version", required=False)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the bundle of VERSION to this zip file.",
)
@click.option(
    "--verify",
    "to_verify",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Check a bundle against its manifest and name every file changed, missing or added.",
)
@DATA_DIR_OPTION
def audit_bundle(
    version: str | None, out: Path | None, to_verify: Path | None, data_dir: str | None
) -> None:
    """Write the audit bundle of model VERSION (model card, evaluation report, gate decisions,
    lineage, training curves, live performance so far, and a manifest of SHA-256 sums), or
    verify one with --verify."""
    from spira_assets.monitoring.audit import (
        AuditBundleError,
        bundle_contents,
        verify_bundle,
        write_bundle,
    )

    if to_verify is not None:
        import zipfile

        try:
            result = verify_bundle(to_verify.read_bytes())
        except (zipfile.BadZipFile, KeyError, ValueError) as error:
            raise CliError(f"{to_verify} is not an audit bundle ({error})") from error
        for kind, names in (("changed", result.changed), ("missing", result.missing),
                            ("not in the manifest", result.unlisted)):  # fmt: skip
            for name in names:
                click.echo(f"{kind}: {name}")
        if not result.ok:
            raise CliError(
                f"{to_verify}: the bundle of model {result.version} was altered "
                f"({len(result.changed)} changed, {len(result.missing)} missing, "
                f"{len(result.unlisted)} added)"
            )
        click.echo(f"{to_verify}: all {result.files} files of model {result.version} match")
        return
    if version is None or out is None:
        raise CliError("give a model VERSION and --out FILE.zip (or --verify FILE.zip)")
    layout = _layout(data_dir)
    import spira_assets
    from spira_assets.storage.lake import Lake

    try:
        files = bundle_contents(
            _local_root(layout),
            Lake(layout.lake),
            version,
            Path(spira_assets.__file__).resolve().parent.parent,
        )
    except AuditBundleError as error:
        raise CliError(str(error)) from error
    write_bundle(files, version, out)
    click.echo(f"audit bundle of model {version}: {out} ({len(files)} files + MANIFEST.json)")
