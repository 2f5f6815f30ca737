"""A data root in object storage (``s3://``): the per-batch graph against a local S3 endpoint.

The endpoint is moto's S3 server (``moto_server``), a separate process speaking the S3 HTTP
API on a free local port; the code under test reaches it through s3fs exactly as it would reach
AWS or MinIO (only ``AWS_ENDPOINT_URL`` differs)."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import s3fs

from spira_assets.app.runner import materialize_batch, materialize_shared
from spira_assets.demo.corpus import DemoSpec, generate_corpus
from spira_assets.environment import data_layout
from spira_assets.storage.lake import Lake
from spira_assets.storage.tables import AUDIO_16K, SPECTROGRAM_FEATURES, TableSpec
from spira_assets.storage.warehouse import Warehouse
from spira_assets_tests.servers import free_port, server

pytestmark = pytest.mark.slow
BUCKET = "spira-test"


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    moto = str(Path(sys.executable).with_name("moto_server"))
    with server([moto, "-H", "127.0.0.1", "-p", str(port)], f"{url}/", {}, Path.cwd(), log):
        yield url


@pytest.fixture
def s3_root(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
        "SPIRA_CACHE_DIR": str(tmp_path / "mirror"),
        "SPIRA_WAREHOUSE_PATH": str(tmp_path / "catalog" / "warehouse.duckdb"),
    }.items():
        monkeypatch.setenv(key, value)
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    root = f"s3://{BUCKET}/{tmp_path.name}"
    monkeypatch.setenv("SPIRA_DATA_DIR", root)
    return root


def test_publish_and_fetch_round_trip_files_and_folders(s3_root: str, tmp_path: Path) -> None:
    layout = data_layout(s3_root)
    assert layout.is_remote and layout.local_root == tmp_path / "mirror"
    folder = layout.local("models/v1")
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.pt").write_bytes(b"\x00weights")
    (folder / "sub" / "lineage.json").write_text('{"batches": ["demo-001"]}')
    layout.publish("models/v1")
    assert (layout.root / "models" / "v1" / "sub" / "lineage.json").exists()

    shutil.rmtree(layout.local_root)  # a fresh pod: nothing local
    fetched = layout.fetch("models/v1")
    assert (fetched / "weights.pt").read_bytes() == b"\x00weights"
    assert json.loads((fetched / "sub" / "lineage.json").read_text()) == {"batches": ["demo-001"]}
    assert layout.fetch_if_present("models/absent") == layout.local("models/absent")
    with pytest.raises(FileNotFoundError, match="models/absent"):
        layout.fetch("models/absent")


def test_batch_graph_on_an_s3_root(s3_root: str, tmp_path: Path) -> None:
    landing = tmp_path / "upload"
    generate_corpus(
        DemoSpec(landing, batches=1, participants=3, seed=31, defect_rate=0.0, noise_files=1),
        workers=1,
    )
    layout = data_layout(s3_root)
    fs = layout.root.fs
    fs.put(str(landing) + "/", (layout.root / "landing").path, recursive=True)
    assert (layout.batch_dir("demo-001") / "_READY").exists()

    instance = dg.DagsterInstance.ephemeral()
    assert materialize_shared(instance).ok
    outcome = materialize_batch(instance, layout, "demo-001")
    assert outcome.ok, outcome

    lake = Lake(layout.lake)
    files = json.loads((landing / "demo-001" / "_demo_manifest.json").read_text())["files"]
    specs: list[TableSpec] = [AUDIO_16K, SPECTROGRAM_FEATURES]
    for spec in specs:  # the tables are Parquet objects in the bucket, nothing local
        parts = [p for p in lake.part_files(spec)]
        assert parts and all(p.protocol == "s3" for p in parts), spec.name
    shards = {
        spec.name: lake.read_table(spec).get_column("shard").unique().to_list() for spec in specs
    }
    for name, paths in shards.items():
        assert len(paths) == 1 and (layout.root / paths[0]).exists(), name

    # the catalog is a local DuckDB file of views over the bucket's Parquet
    warehouse = Warehouse(layout.warehouse, Lake(layout.lake))
    assert str(layout.warehouse).startswith(str(tmp_path / "catalog"))
    for table in ("raw_audio", "audio_16k", "spectrogram_features"):
        count = warehouse.query(f"SELECT count(*) FROM {table} WHERE batch_id = 'demo-001'")
        assert count.item() == files, table

    # another machine (empty mirror) reads the same shard bytes from the bucket
    features_shard = shards["spectrogram_features"][0]
    before = layout.local(features_shard).read_bytes()
    shutil.rmtree(layout.local_root)
    assert layout.fetch(features_shard).read_bytes() == before
