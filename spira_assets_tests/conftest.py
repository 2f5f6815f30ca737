"""Shared fixtures: an isolated environment and small generated corpora."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import polars as pl
import pytest
from upath import UPath

from spira_assets.audio.quality import AudioQualityRules
from spira_assets.demo.corpus import DemoSpec, generate_corpus
from spira_assets.demo.defects import DEFECT_KINDS
from spira_assets.ingest.batch_source import BatchSource
from spira_assets.ingest.metadata import MetadataResult, validate_metadata
from spira_assets.ingest.raw_audio import RawAudioResult, ingest_raw_audio
from spira_assets.privacy import Pseudonymizer
from spira_assets.storage.layout import DataLayout
from spira_assets.storage.raw_store import RawStore
from spira_assets_tests.fresh_demo import FreshDemo, run_fresh_demo
from spira_assets_tests.hygiene import current_defs_state_storage, leaked_defs_state_storage
from spira_assets_tests.settings import LENIENT_GATE, SMALL_TRAINING

# A key that passes privacy.check_pseudonym_key (64 hex digits). Pseudonyms, and so the
# participant splits of the small test corpora, depend on it: sha256("spira-assets test
# pseudonym key 2") puts at least one participant of each class wherever the previous,
# too-short key did (train and validation of both corpora below need someone).
TEST_KEY = "5850bb0da17eded83615d923a400ddbbc2da231464d9fc5d9e57640303d5ec6b"


# ``make test`` runs two pytest-xdist workers (docs/PERFORMANCE.md "Test suite").
# Session fixtures that train a model (about 40 s together on 2 cores): every test that needs
# one goes to the same worker, so they are built once per run, not once per worker; the other
# tests are shared out by load, the slow end-to-end ones first so none is left for the end.
TRAINED_FIXTURES = frozenset({"evaluation_root", "champion_root"})
TRAINED_GROUP = "trained"


def pytest_configure(config: pytest.Config) -> None:
    """On an xdist worker, torch (and every process the tests start, through the environment)
    computes on one thread: two workers each running OpenMP's two spinning threads on two
    cores made training tests up to 3x slower than alone."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if TRAINED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group(TRAINED_GROUP))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable


@contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Set (or, with None, remove) environment variables for session fixtures, which cannot
    use monkeypatch; everything is put back afterwards, including what the code under test
    changed (mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI)."""
    saved = {key: os.environ.get(key) for key in (*values, "MLFLOW_TRACKING_URI")}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def fixture_environment(
    factory: pytest.TempPathFactory, **values: str | None
) -> AbstractContextManager[None]:
    """``environment`` for a session fixture that materializes: the test key and an empty
    config home, as ``isolated_env`` gives each test. Session fixtures are set up before any
    function fixture, so without this the first one built read the developer's own key file
    (``~/.config/spira_assets/pseudonym.key``): other pseudonyms, another split, another
    model, depending on which fixture a run happened to build first."""
    return environment(
        SPIRA_PSEUDONYM_KEY=TEST_KEY, XDG_CONFIG_HOME=str(factory.mktemp("xdg")), **values
    )


@pytest.fixture(autouse=True)
def no_forkserver_from_an_earlier_test() -> None:
    """Each test starts without this process's multiprocessing forkserver. A process has one,
    started by the first multiprocess run with that moment's environment, which every later
    step process inherits: a run's own variables (a PostgreSQL instance's credentials) never
    reached its steps when an earlier test on the same pytest-xdist worker had started it (a
    training step failed on missing DAGSTER_PG_* once the worker groups held). In production
    each run has a fresh process, so this is the tests' concern only."""
    from multiprocessing import forkserver

    server = forkserver._forkserver  # type: ignore[attr-defined]
    if server._forkserver_pid is not None:
        server._stop()


@pytest.fixture(autouse=True)
def no_leaked_instance_context() -> Iterator[None]:
    """A test that leaves a DagsterInstance entered fails (see ``hygiene.py``)."""
    before = current_defs_state_storage()
    yield
    leak = leaked_defs_state_storage(before)
    if leak is not None:
        pytest.fail(leak)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reads the developer's key, data dir or Dagster home."""
    config = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    monkeypatch.setenv("SPIRA_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.delenv("SPIRA_DATA_DIR", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path_factory.mktemp("dagster_home")))
    # mlflow.set_tracking_uri() also exports MLFLOW_TRACKING_URI, so a test that trains would
    # point every later test at its store; empty means "the data root's store" and the
    # original value comes back after each test
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    # ... and the URI mlflow.set_tracking_uri() keeps in a module global, which would otherwise
    # win over the variable: a later test loading "models:/...@champion" would ask an earlier
    # test's registry
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    os.environ["MLFLOW_TRACKING_URI"] = ""


@pytest.fixture
def pseudonymizer() -> Pseudonymizer:
    return Pseudonymizer(TEST_KEY)


@pytest.fixture(scope="session")
def defect_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One batch of 8 participants (32 recordings) with every defect kind exactly once."""
    out = tmp_path_factory.mktemp("defect_corpus") / "landing"
    rate = len(DEFECT_KINDS) / 32
    generate_corpus(
        DemoSpec(out, batches=1, participants=8, seed=11, defect_rate=rate, noise_files=1),
        workers=1,
    )
    return out


@pytest.fixture(scope="session")
def clean_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two defect-free batches of 4 participants each."""
    out = tmp_path_factory.mktemp("clean_corpus") / "landing"
    generate_corpus(
        DemoSpec(out, batches=2, participants=4, seed=5, defect_rate=0.0, noise_files=1), workers=1
    )
    return out


def data_root_with(tmp_path: Path, landing: Path) -> DataLayout:
    """A fresh data root whose landing zone is a copy of ``landing``."""
    root = tmp_path / "data"
    shutil.copytree(landing, root / "landing")
    return DataLayout.from_location(root)


@pytest.fixture
def demo_layout(tmp_path: Path, defect_corpus: Path) -> DataLayout:
    return data_root_with(tmp_path, defect_corpus)


def run_core_stages(
    layout: DataLayout, batch_id: str, pseudonymizer: Pseudonymizer
) -> tuple[RawAudioResult, MetadataResult]:
    """Both ingestion stages through the core API only (no Dagster)."""
    source = BatchSource.open(layout, batch_id)
    redactor = source.redactor(pseudonymizer)
    now = datetime.now(UTC)
    raw = ingest_raw_audio(
        batch_id,
        source.directory,
        RawStore(layout.raw_store),
        AudioQualityRules(),
        pseudonymizer,
        redactor,
        now,
        workers=1,
    )
    meta = validate_metadata(
        batch_id, source.metadata_bytes, raw.table, pseudonymizer, redactor, now, source.provenance
    )
    return raw, meta


@pytest.fixture(scope="session")
def defect_stage_results(
    tmp_path_factory: pytest.TempPathFactory, defect_corpus: Path
) -> Iterator[tuple[RawAudioResult, MetadataResult, DataLayout]]:
    layout = data_root_with(tmp_path_factory.mktemp("core"), defect_corpus)
    raw, meta = run_core_stages(layout, "demo-001", Pseudonymizer(TEST_KEY))
    yield raw, meta, layout


def all_quarantine(raw: RawAudioResult, meta: MetadataResult) -> pl.DataFrame:
    return pl.concat([raw.quarantine, meta.quarantine])


def as_upath(path: Path) -> UPath:
    return UPath(path)


@pytest.fixture(scope="session")
def materialized_root(tmp_path_factory: pytest.TempPathFactory, clean_corpus: Path) -> Path:
    """The clean corpus with every per-batch asset and the noise set materialized (read-only
    for tests: copy it before writing)."""
    import dagster as dg

    from spira_assets.app.runner import materialize_batch, materialize_shared

    layout = data_root_with(tmp_path_factory.mktemp("materialized"), clean_corpus)
    with fixture_environment(tmp_path_factory, SPIRA_DATA_DIR=str(layout.root)):
        instance = dg.DagsterInstance.ephemeral()
        assert materialize_shared(instance).ok
        for batch in ("demo-001", "demo-002"):
            assert materialize_batch(instance, layout, batch).ok
    return Path(str(layout.root))


@pytest.fixture(scope="session")
def evaluation_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One materialized batch of 24 participants: enough for patients and controls in every
    split (the 8-participant corpus cannot give a test set with both classes)."""
    import dagster as dg

    from spira_assets.app.runner import materialize_batch, materialize_shared

    out = tmp_path_factory.mktemp("evaluation") / "data" / "landing"
    generate_corpus(
        DemoSpec(out, batches=1, participants=24, seed=17, defect_rate=0.0, noise_files=1),
        workers=1,
    )
    layout = DataLayout.from_location(out.parent)
    with fixture_environment(tmp_path_factory, SPIRA_DATA_DIR=str(layout.root)):
        instance = dg.DagsterInstance.ephemeral()
        assert materialize_shared(instance).ok
        assert materialize_batch(instance, layout, "demo-001").ok
    return Path(str(layout.root))


def copy_data_root(source: Path, target: Path) -> Path:
    """A private copy of a materialized data root (without a stale warehouse file)."""
    shutil.copytree(source, target)
    for stale in ("warehouse.duckdb", "warehouse.duckdb.wal"):
        (target / stale).unlink(missing_ok=True)
    return target


@pytest.fixture(scope="session")
def champion_root(tmp_path_factory: pytest.TempPathFactory, evaluation_root: Path) -> Path:
    """``evaluation_root`` with one model trained, evaluated and promoted to champion (seed 42,
    3 epochs); copy it before changing anything."""
    import dagster as dg

    from spira_assets.app.runner import materialize_shared
    from spira_assets.automation.jobs import TRAINING_ASSETS

    root = copy_data_root(evaluation_root, tmp_path_factory.mktemp("champion") / "data")
    with fixture_environment(tmp_path_factory, SPIRA_DATA_DIR=str(root), MLFLOW_TRACKING_URI=None):
        outcome = materialize_shared(
            dg.DagsterInstance.ephemeral(),
            TRAINING_ASSETS,
            resources={"training": SMALL_TRAINING, "evaluation": LENIENT_GATE},
        )
        assert outcome.ok, outcome
    return root


@pytest.fixture(scope="session")
def fresh_demo(tmp_path_factory: pytest.TempPathFactory) -> FreshDemo:
    """``spira demo`` once per session on a machine of its own: its own config home and
    Dagster home, no pseudonym key in the environment (the demo corpus's own key is used).
    Read-only for tests: copy its data root before changing anything."""
    machine = tmp_path_factory.mktemp("demo-machine-a")
    with environment(
        SPIRA_PSEUDONYM_KEY=None,
        SPIRA_DATA_DIR=None,
        MLFLOW_TRACKING_URI=None,
        XDG_CONFIG_HOME=str(machine / "config"),
        DAGSTER_HOME=str(machine / "dagster_home"),
    ):
        return run_fresh_demo(machine)
