"""The landing-zone sensor: new, incomplete, already-known and refused batches."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import soundfile as sf

from spira_assets.assets.waveforms import hospital_noise
from spira_assets.automation.sensors import landing_zone_sensor, noise_folder_sensor
from spira_assets.partitions import collection_batch
from spira_assets.resources import IngestPolicy, StorageResource


def evaluate(
    root: Path, instance: dg.DagsterInstance, cursor: str | None = None
) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"storage": StorageResource(data_dir=str(root))}
    )
    result = landing_zone_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def batch(root: Path, name: str, ready: bool = True) -> None:
    folder = root / "landing" / name
    folder.mkdir(parents=True)
    (folder / "metadata.csv").write_text("participant_id\n")
    if ready:
        (folder / "_READY").touch()


def test_new_complete_batch_gets_a_partition_and_a_run(tmp_path: Path) -> None:
    batch(tmp_path, "hc-2026-01")
    result = evaluate(tmp_path, dg.DagsterInstance.ephemeral())
    assert [r.partition_key for r in result.run_requests or []] == ["hc-2026-01"]
    assert [r.run_key for r in result.run_requests or []] == ["landed:hc-2026-01"]
    (request,) = result.dynamic_partitions_requests or []
    assert isinstance(request, dg.AddDynamicPartitionsRequest)
    assert request.partitions_def_name == collection_batch.name
    assert list(request.partition_keys) == ["hc-2026-01"]


def test_incomplete_batch_is_left_alone(tmp_path: Path) -> None:
    batch(tmp_path, "hc-2026-02", ready=False)
    result = evaluate(tmp_path, dg.DagsterInstance.ephemeral())
    assert not result.run_requests and not result.dynamic_partitions_requests
    assert result.skip_reason is not None and "1 incomplete" in str(result.skip_reason)


def test_known_batch_is_not_requested_again(tmp_path: Path) -> None:
    batch(tmp_path, "hc-2026-01")
    batch(tmp_path, "hc-2026-03")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(collection_batch.name, ["hc-2026-01"])
    result = evaluate(tmp_path, instance)
    assert [r.partition_key for r in result.run_requests or []] == ["hc-2026-03"]


def test_refused_folder_names_are_never_partitions_and_warned_once(tmp_path: Path) -> None:
    batch(tmp_path, "bad name!")
    first = evaluate(tmp_path, dg.DagsterInstance.ephemeral())
    assert not first.run_requests and not first.dynamic_partitions_requests
    assert json.loads(first.cursor or "{}")["refused"] == ["bad name!"]


def test_empty_or_missing_landing_zone_skips(tmp_path: Path) -> None:
    result = evaluate(tmp_path, dg.DagsterInstance.ephemeral())
    assert not result.run_requests and result.skip_reason is not None


def _noise_sensor(root: Path, instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"storage": StorageResource(data_dir=str(root))}
    )
    result = noise_folder_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def test_noise_prepared_by_another_run_is_not_prepared_again(tmp_path: Path) -> None:
    """A first `make ui` after `spira demo`: the sensor has no cursor, but hospital_noise has
    already prepared this very folder; only a change of the folder requests a run."""
    noise = tmp_path / "landing" / "noise"
    noise.mkdir(parents=True)
    hum = 0.1 * np.random.default_rng(0).standard_normal(16_000 * 3)
    sf.write(noise / "ward.wav", hum.astype(np.float32), 16_000, subtype="PCM_16")
    instance = dg.DagsterInstance.ephemeral()
    assert _noise_sensor(tmp_path, instance, None).run_requests  # never prepared: a run
    prepared = dg.materialize(
        [hospital_noise],
        instance=instance,
        resources={"storage": StorageResource(data_dir=str(tmp_path)), "policy": IngestPolicy()},
    )
    assert prepared.success
    first = _noise_sensor(tmp_path, instance, None)
    assert not first.run_requests, first.skip_reason
    assert first.skip_reason is not None and prepared.run_id in str(first.skip_reason)
    again = _noise_sensor(tmp_path, instance, first.cursor)
    assert not again.run_requests
    sf.write(noise / "corridor.wav", hum.astype(np.float32), 16_000, subtype="PCM_16")
    changed = _noise_sensor(tmp_path, instance, again.cursor)
    assert [r.run_key for r in changed.run_requests or []] == [f"noise:{changed.cursor}"]
