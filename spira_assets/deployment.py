"""Where the code location runs: one mapping picks executors and per-step settings.

``SPIRA_DEPLOYMENT`` selects an entry (``local`` by default):

- ``local``: a batch run's steps run in the run's own process (Dagster's in-process
  executor); a training run's steps as subprocesses forked from a server that has imported
  torch, scikit-learn and MLflow (the multiprocess executor). The device is CUDA when present,
  else the CPU. Used by ``dagster dev``, compose and tests. Until 2026-12-05 batch runs forked
  a process per step too: on 2 cores that cost 10-14 s to start the forkserver (definitions,
  torch, scipy) and 2-3 s per step, against 3-5 s of work for a small batch
  (``benchmarks/cycle.py``, docs/PERFORMANCE.md "Landing to decision"). The price: a step that
  crashes the process (not an exception: a segfault, the OOM killer) fails the whole run, and
  the batch's steps no longer overlap (they are a chain anyway; decoding has its own worker
  processes, ``workers.py``).
- ``local-processes``: the former ``local``: every step of every run in its own process.
- ``single-process``: every step of a run in the run's own process (Dagster's in-process
  executor): no step process to start, so on a machine with few cores a small batch takes a
  fifth of the time (``benchmarks/executors.py``), but a step that crashes its process takes
  the whole run with it, and a run's steps never overlap. For small sites and for the
  end-to-end test of the daemon and its sensors.
- ``k8s``: each step of a run is its own Kubernetes Job (dagster-k8s ``k8s_job_executor``),
  so the per-batch steps of many partitions spread over CPU pods while ``spira_model``'s step
  carries its ``dagster-k8s/config`` GPU request (see ``assets/training.py``).

In both, tensors run on CUDA where the step's process sees a GPU, else on the CPU.

Everything else (data root, MLflow, the pseudonym key) comes from the environment in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import dagster as dg

from spira_assets.environment import setting

DEPLOYMENT_ENV = "SPIRA_DEPLOYMENT"

# How the CLI executes a run: every step in its own process, or all in the calling process.
Executor = Literal["in_process", "multiprocess"]
EXECUTORS: tuple[Executor, ...] = ("in_process", "multiprocess")

# Step pods of the per-batch work: CPU only, sized for decoding and feature extraction.
CPU_STEP_RESOURCES = {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}


@dataclass(frozen=True)
class Deployment:
    name: str
    batch_executor: dg.ExecutorDefinition
    training_executor: dg.ExecutorDefinition
    decode_workers: int  # IngestPolicy.decode_workers (threads per step)


# What a run's forkserver imports before it forks the step processes: the code location (which
# itself loads without torch, MLflow or scikit-learn) and the libraries of the steps that run
# there, so no step process imports them again (3.4x faster per batch than spawn on 2 cores,
# benchmarks/executors.py). A batch run computes features (torch) and drift (scipy); a
# training run trains, scores and logs (torch, scikit-learn, MLflow).
BATCH_PRELOAD = ["spira_assets.definitions", "spira_assets.features.extract", "scipy.stats"]
TRAINING_PRELOAD = [
    "spira_assets.definitions",
    "spira_assets.ml.train",
    "spira_assets.evaluation.assessment",
    "spira_assets.evaluation.comparison",
    "spira_assets.ml.serving",
    "mlflow",
]


def _forked(name: str, preload: list[str]) -> dg.ExecutorDefinition:
    return dg.multiprocess_executor.configured(
        {"max_concurrent": 2, "start_method": {"forkserver": {"preload_modules": preload}}},
        name=name,
    )


def _local() -> Deployment:
    return Deployment(
        "local",
        dg.in_process_executor,
        _forked("local_training_processes", TRAINING_PRELOAD),
        decode_workers=2,
    )


def _local_processes() -> Deployment:
    return Deployment(
        "local-processes",
        _forked("local_processes", BATCH_PRELOAD),
        _forked("local_training_processes", TRAINING_PRELOAD),
        decode_workers=2,
    )


def _single_process() -> Deployment:
    return Deployment("single-process", dg.in_process_executor, dg.in_process_executor, 2)


def _k8s() -> Deployment:
    from dagster_k8s import k8s_job_executor  # only a k8s deployment needs the package

    batch = k8s_job_executor.configured(
        {
            "max_concurrent": 8,
            "step_k8s_config": {"container_config": {"resources": CPU_STEP_RESOURCES}},
        },
        name="k8s_cpu_steps",
    )
    # the GPU request is a per-asset tag on spira_model, merged over this step default
    training = k8s_job_executor.configured({"max_concurrent": 2}, name="k8s_training_steps")
    return Deployment("k8s", batch, training, decode_workers=1)


DEPLOYMENTS = {
    "local": _local,
    "local-processes": _local_processes,
    "single-process": _single_process,
    "k8s": _k8s,
}


def current_deployment() -> Deployment:
    name = setting(DEPLOYMENT_ENV) or "local"
    if name not in DEPLOYMENTS:
        raise ValueError(f"{DEPLOYMENT_ENV}={name!r}: expected one of {sorted(DEPLOYMENTS)}")
    return DEPLOYMENTS[name]()


def sensor_interval(default_s: int) -> int:
    """Seconds between evaluations of the landing, noise and retraining sensors: their default,
    or ``SPIRA_SENSOR_INTERVAL_S`` for all three (a site that wants faster pickup; the
    end-to-end test, which would otherwise spend minutes waiting for ticks)."""
    text = setting("SPIRA_SENSOR_INTERVAL_S")
    if not text:
        return default_s
    value = int(text)
    if value < 1:
        raise ValueError(f"SPIRA_SENSOR_INTERVAL_S must be at least 1 second, not {value}")
    return value
