"""``spira demo``: the main job, and what it prints."""

from __future__ import annotations

import json

import click

from spira_assets.cli.app import (
    DAGSTER_URL_OPTION,
    DATA_DIR_OPTION,
    PROFILE_OPTION,
    CliError,
    _demo_options,
    _layout,
    _local_root,
    _run_batches,
    _run_shared,
    main,
)
from spira_assets.storage.batches import scan_landing
from spira_assets.storage.layout import DataLayout


def demo_training(
    profile: str, seeds: list[int], epochs: int, warmup: int | None
) -> dict[str, object]:
    """Training resource values for a demo-sized run of ``profile``: fewer epochs; the
    platform profile also warms up faster and stops early on the small corpus."""
    training: dict[str, object] = {"profile": profile, "seeds": seeds, "max_epochs": epochs}
    if profile == "platform":
        training |= {"warmup_steps": warmup or 40, "patience": max(2, epochs // 2)}
    elif warmup:
        training["warmup_steps"] = warmup
    return training


@main.command()
@DATA_DIR_OPTION
@_demo_options
@click.option(
    "--seeds",
    default="42,43,46",
    show_default=True,
    help="Training seeds (one model each; the best by validation loss is kept, and with the "
    "spira-acl2021 profile every seed's model too).",
)
@click.option(
    "--epochs",
    default=5,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Maximum epochs per seed (the platform profile's own default is 30, SPIRA's 1000).",
)
@click.option(
    "--warmup",
    default=None,
    type=click.IntRange(1),
    help="Noam warm-up steps (default: 40 for the platform profile on the small demo "
    "corpus; the spira-acl2021 profile keeps its published 1000).",
)
@PROFILE_OPTION
@DAGSTER_URL_OPTION
def demo(
    data_dir: str | None,
    batches: int,
    participants: int,
    seed: int,
    effect_size: float,
    defect_rate: float,
    seeds: str,
    epochs: int,
    warmup: int | None,
    profile: str,
    dagster_url: str | None,
) -> None:
    """The main job: generate the demo corpus if absent, materialize the whole graph for every
    batch, print a summary."""
    layout = _layout(data_dir)
    complete = _landed_corpus(layout, batches, participants, seed, effect_size, defect_rate)
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError as error:
        raise CliError(f"--seeds must be comma-separated integers, got {seeds!r}") from error
    if dagster_url:
        click.echo(f"launching the runs through {dagster_url}")
    failed = _run_shared(layout, ("hospital_noise",), dagster_url=dagster_url)
    failed += _run_batches(layout, complete, dagster_url=dagster_url)
    click.echo(
        f"training SpiraConv ({profile} profile), seeds {seed_list}, up to {epochs} epochs each ..."
    )
    training = demo_training(profile, seed_list, epochs, warmup)
    failed += _run_shared(
        layout,
        ("dataset_split", "spira_model", "evaluation_report", "champion", "drift_reference"),
        {"training": training},
        log_level="INFO",
        tolerated=frozenset({"champion:promotion_gate"}),  # a refusal is a valid outcome
        dagster_url=dagster_url,
    )
    # each batch's drift was judged before there was a champion: judge it against this one
    # (a batch in its training data says so); the daemon's stale_batches does the same later
    failed += _run_batches(layout, complete, ("batch_drift",), dagster_url=dagster_url)
    all_ok = _print_batches(layout, complete)
    _print_model(layout)
    _print_where_runs_are(dagster_url)
    if failed or not all_ok:
        raise CliError(f"demo finished with problems in {failed or 'defect verification'}")


def _print_where_runs_are(dagster_url: str | None) -> None:
    """Where the UI shows these runs: the runs carry the code location's origin whether they
    ran in this process or through the webserver (``app/runner.py``), so Overview's timeline,
    the UI's first screen, draws them."""
    if dagster_url:
        click.echo(f"UI: {dagster_url}  (these runs are on Overview's timeline and under Runs)")
        return
    click.echo(
        "UI: make ui  ->  http://127.0.0.1:3000  (these runs are on its first screen, "
        "Overview's timeline, and under Runs)"
    )


def _landed_corpus(
    layout: DataLayout,
    batches: int,
    participants: int,
    seed: int,
    effect_size: float,
    defect_rate: float,
) -> list[str]:
    """The complete batches of the landing zone, after generating the demo corpus (and its
    public pseudonym key) when there are none."""
    from spira_assets.demo.corpus import DemoSpec, generate_corpus
    from spira_assets.privacy import write_demo_key

    landing = _local_root(layout) / "landing"
    scan = scan_landing(layout.landing)
    if not scan.complete:
        click.echo(f"generating demo corpus in {landing} ...")
        generate_corpus(DemoSpec(landing, batches, participants, seed, effect_size, defect_rate))
        # the corpus brings its own public key: the same pseudonyms, split and metrics on
        # every machine (a root that already holds batches keeps the key it has)
        click.echo(f"demo pseudonym key: {write_demo_key(_local_root(layout), seed)}")
        scan = scan_landing(layout.landing)
    else:
        click.echo(f"using the {len(scan.complete)} complete batches already in {landing}")
    return list(scan.complete)


def _print_batches(layout: DataLayout, complete: list[str]) -> bool:
    """The per-batch summary table and the quarantine by rule; False when a demo batch's
    planted defects were not all caught."""
    from spira_assets.app.summary import summarize
    from spira_assets.resources import FeatureSettings

    config_hash = FeatureSettings().config().config_hash()
    summaries, by_rule = summarize(layout, complete, config_hash)
    click.echo("")
    click.echo(
        f"{'batch':<12}{'files':>7}{'acc':>6}{'rows':>7}{'acc':>6}{'quar':>6}"
        f"{'pat':>6}{'ctl':>6}{'hours':>7}{'feat':>6}{'windows':>9}  defects caught"
    )
    all_ok = True
    for s in summaries:
        v = s.verification
        caught = f"{v.caught}/{v.defects}" if v else "n/a (not a demo batch)"
        click.echo(
            f"{s.batch_id:<12}{s.files_in:>7}{s.files_accepted:>6}{s.rows_in:>7}"
            f"{s.rows_accepted:>6}{s.rows_quarantined:>6}{s.patients:>6}{s.controls:>6}"
            f"{s.hours:>7.2f}{s.feature_recordings:>6}{s.windows:>9}  {caught}"
        )
        if v and not v.ok:
            all_ok = False
            for problem in v.problems:
                click.echo(f"    mismatch: {problem}")
    click.echo("\nquarantine by stage and rule:")
    for stage, rule, count in by_rule.iter_rows():
        click.echo(f"  {stage:<20}{rule:<28}{count:>5}")
    click.echo(
        "\ncolumns: files in/accepted, metadata rows in/accepted/quarantined, participants "
        "(patients, controls), accepted hours, recordings with features, 4 s windows"
    )
    click.echo(f"features: {layout.root / 'features' / config_hash} (config {config_hash})")
    click.echo(f"warehouse: {layout.warehouse}")
    return all_ok


def _score(value: float | None) -> str:
    """A validation score, or "undefined" (a validation split of one class has no AUROC)."""
    return "undefined" if value is None or value != value else f"{value:.3f}"


def _print_model(layout: DataLayout) -> None:
    from spira_assets.environment import tracking_uri
    from spira_assets.storage.lake import Lake
    from spira_assets.storage.tables import MODEL_VERSIONS

    models = Lake(layout.lake).read_table(MODEL_VERSIONS).sort("trained_at")
    if models.is_empty():
        click.echo("model: none trained")
        return
    m = models.row(-1, named=True)
    click.echo(
        f"model: version {m['model_version']} (registered v{m['registered_version']}), "
        f"best seed {m['best_seed']} epoch {m['best_epoch']} on {m['device']}: validation "
        f"AUROC {_score(m['val_auroc'])} (seeds: {_score(m['val_auroc_mean'])} +/- "
        f"{_score(m['val_auroc_std'])}), loss {m['val_loss']:.3f}"
    )
    click.echo(f"model files: {m['directory']}")
    uri = tracking_uri(layout.local_root)
    click.echo(f"MLflow: mlflow ui --backend-store-uri {uri}")
    _print_evaluation(layout)


def _print_evaluation(layout: DataLayout) -> None:
    import polars as pl

    from spira_assets.storage.lake import Lake
    from spira_assets.storage.tables import EVALUATION_METRICS, PROMOTIONS

    lake = Lake(layout.lake)
    decisions = lake.read_table(PROMOTIONS).sort("decided_at")
    if decisions.is_empty():
        click.echo("evaluation: none")
        return
    last = decisions.row(-1, named=True)
    version = last["candidate_version"]
    every = lake.read_part(EVALUATION_METRICS, version)
    metrics = every.filter(
        (pl.col("role") == "candidate")
        & (pl.col("level") == "recording")
        & pl.col("metric").is_in(["auroc", "accuracy", "sensitivity", "specificity"])
    )
    click.echo(f"evaluation of {version} on held-out test participants (95% CI):")
    for condition, metric, value, low, high in metrics.select(
        "condition", "metric", "value", "ci_low", "ci_high"
    ).iter_rows():
        interval = (
            f"[{low:.3f}, {high:.3f}]"
            if low is not None and high is not None
            else "[interval undefined: too few participants of a class]"
        )
        click.echo(f"  {condition:<16}{metric:<12}{_score(value):>6}  {interval}")
    seeds = every.filter(pl.col("role").str.starts_with("seed "))
    if not seeds.is_empty():
        click.echo("SPIRA's published test, accuracy at 0.5 per seed (clean / published noisy):")
        for role in seeds.get_column("role").unique(maintain_order=True):
            row = dict(seeds.filter(pl.col("role") == role).select("condition", "value").rows())
            noisy = row.get("published_noisy")
            click.echo(
                f"  {role:<12}{row.get('clean', float('nan')):6.3f} / "
                + (f"{noisy:6.3f}" if noisy is not None else "n/a")
            )
    reasons = ", ".join(json.loads(last["reasons"])) or "all criteria met"
    click.echo(
        f"gate: {'PASSED' if last['passed'] else 'FAILED'} ({reasons}); "
        f"{len(decisions)} decision(s) in the promotions table"
    )
    reports = layout.local_root / "reports" / version
    click.echo(f"report: {reports / 'evaluation.html'}")
    click.echo(f"model card: {reports / 'model_card.html'}")
