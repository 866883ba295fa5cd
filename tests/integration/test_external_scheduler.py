"""A sweep through an external Dask scheduler, started the way docker-compose.yml starts it.

The scheduler and worker commands are defined once, below, as templates; one test checks that
docker-compose.yml runs exactly these commands (so the two cannot drift), the other starts them as
processes on 127.0.0.1, runs ``hessweep run --scheduler`` against them and compares the cube with an
in-process run on one worker: the eigenvalues must be bit-identical.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"

# The commands of docker-compose.yml, with the host and port left as fields.
SCHEDULER_COMMAND = "dask scheduler --host {host} --port {port} --dashboard-address {dashboard}".split()
WORKER_COMMAND = "dask worker tcp://{host}:{port} --nthreads 1 --nworkers 1".split()
SWEEP_COMMAND = "hessweep run {sweep} --scheduler tcp://{host}:{port} --store {store}".split()
# One BLAS thread per worker: eigenvalues are bit-identical only for a fixed BLAS thread count.
WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# The values docker-compose.yml fills in.
COMPOSE_SCHEDULER = {"host": "0.0.0.0", "port": 8786, "dashboard": ":8787"}
COMPOSE_CLIENT = {"host": "scheduler", "port": 8786}
COMPOSE_SWEEP = {"sweep": "sweeps/quickstart.yaml", "store": "/data/results/quickstart.zarr"}

N_WORKERS = 2
# 2 c × 2 losses × 2 signals × 2 trials at p = 30: a few seconds of work.
TINY_SWEEP = """\
name: tiny-external
p: 30
trials: 2
seed: 7
model: logistic
grid:
  c: [0.5, 1.0]
  loss: [logistic, exponential]
  signal: [0.0, 2.0]
signal: mu.norm
fixed:
  w_star: {norm: 1.0}
  w: w_star
  mu: {angle: 90}
  cov: {eigenvalues: [1], weights: [1]}
theory: {points: 64}
"""
START_TIMEOUT = 60  # seconds for the scheduler and both workers to come up
SWEEP_TIMEOUT = 60  # seconds for `hessweep run`
STOP_TIMEOUT = 10  # seconds between SIGTERM and SIGKILL


def command(template: Sequence[str], **fields: Any) -> list[str]:
    """One of the command templates above with its fields filled in."""
    return [part.format(**fields) for part in template]


# ----------------------------------------------------------------------------------------------
# docker-compose.yml runs the same commands
# ----------------------------------------------------------------------------------------------


def _compose_services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))  # resolves the `<<` merges
    return compose["services"]


def _argv(service: Mapping[str, Any]) -> list[str]:
    value = service["command"]
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value]


def _environment(service: Mapping[str, Any]) -> dict[str, str]:
    value = service.get("environment") or {}
    if isinstance(value, list):
        value = dict(item.split("=", 1) for item in value)
    return {str(key): str(item) for key, item in value.items()}


def _volume_targets(service: Mapping[str, Any]) -> set[str]:
    targets = set()
    for volume in service.get("volumes") or []:
        targets.add(volume["target"] if isinstance(volume, Mapping) else volume.split(":")[1])
    return targets


def test_compose_runs_the_tested_commands() -> None:
    services = _compose_services()
    assert _argv(services["scheduler"]) == command(SCHEDULER_COMMAND, **COMPOSE_SCHEDULER)

    workers = sorted(name for name in services if name.startswith("worker"))
    assert len(workers) == N_WORKERS
    for name in workers:
        assert _argv(services[name]) == command(WORKER_COMMAND, **COMPOSE_CLIENT), name
        environment = _environment(services[name])
        assert {key: environment.get(key) for key in WORKER_ENV} == WORKER_ENV, name

    sweep = services["sweep"]
    assert _argv(sweep) == command(SWEEP_COMMAND, **COMPOSE_CLIENT, **COMPOSE_SWEEP)
    assert (REPO / COMPOSE_SWEEP["sweep"]).is_file()
    assert {"scheduler", *workers} <= set(sweep["depends_on"])
    # The workers write the cube themselves: the store's folder is a volume of client and workers.
    results = str(Path(COMPOSE_SWEEP["store"]).parent)
    for name in ["sweep", *workers]:
        assert results in _volume_targets(services[name]), name


# ----------------------------------------------------------------------------------------------
# A cluster of processes on 127.0.0.1
# ----------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _hessweep() -> list[str]:
    """The venv's ``hessweep`` console script, or ``python -m pipeline.cli`` where it is not installed."""
    script = Path(sys.executable).parent / "hessweep"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pipeline.cli"]


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process, SIGKILL whatever of its process group is left after a grace period."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in processes:
        # Each process leads its own session: this also reaches a worker that its nanny left behind.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process.wait()


class Cluster:
    """A ``dask scheduler`` and its ``dask worker`` processes; logs under ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self._files: list[TextIO] = []

    def start(self, name: str, argv: list[str], env: Mapping[str, str]) -> None:
        log = self.folder / f"{name}.log"
        handle = log.open("w")
        self._files.append(handle)
        self.logs.append(log)
        self.processes.append(
            subprocess.Popen(
                argv,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=self.folder,
                start_new_session=True,
            )
        )

    def describe(self) -> str:
        parts = []
        for log, process in zip(self.logs, self.processes, strict=True):
            tail = log.read_text(errors="replace")[-3000:]
            parts.append(f"--- {log.name} (exit code {process.poll()}) ---\n{tail}")
        return "\n".join(parts)

    def close(self) -> None:
        try:
            # Workers first: a worker whose scheduler went away first spends seconds reconnecting.
            _stop(self.processes[1:])
            _stop(self.processes[:1])
        finally:
            for handle in self._files:
                handle.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    from distributed import Client

    folder = tmp_path / "cluster"
    folder.mkdir()
    dask = str(Path(sys.executable).parent / "dask")
    running = Cluster(folder)
    fields = {"host": "127.0.0.1", "port": running.port}
    try:
        scheduler = command(SCHEDULER_COMMAND, **fields, dashboard=":0")
        running.start("scheduler", [dask, *scheduler[1:]], os.environ)
        # Worker scratch space in this test's folder rather than the shared temporary folder.
        worker_env = {**os.environ, **WORKER_ENV, "TMPDIR": str(folder)}
        for i in range(N_WORKERS):
            running.start(f"worker-{i + 1}", [dask, *command(WORKER_COMMAND, **fields)[1:]], worker_env)
        try:
            with Client(running.address, timeout=START_TIMEOUT) as client:
                client.wait_for_workers(N_WORKERS, timeout=START_TIMEOUT)
        except Exception as error:
            pytest.fail(f"the cluster did not start: {error!r}\n{running.describe()}")
        yield running
    finally:
        running.close()


@pytest.mark.distributed
def test_sweep_through_external_scheduler_matches_local_run(tmp_path: Path, cluster: Cluster) -> None:
    from pipeline import open_cube
    from pipeline.runner import run_sweep
    from pipeline.sweep import load_sweep

    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(TINY_SWEEP, encoding="utf-8")
    external = tmp_path / "external.zarr"
    local = tmp_path / "local.zarr"

    argv = command(SWEEP_COMMAND, sweep=sweep, host="127.0.0.1", port=cluster.port, store=external)
    started = time.monotonic()
    result = subprocess.run(
        [*_hessweep(), *argv[1:]],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=SWEEP_TIMEOUT,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, (
        f"hessweep run exited with {result.returncode} after {elapsed:.1f} s\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\n{cluster.describe()}"
    )

    spec = load_sweep(sweep)
    run_sweep(spec, local, workers=1, progress=False, dashboard_address=":0")

    with open_cube(external) as through_scheduler, open_cube(local) as in_process:
        assert dict(through_scheduler.sizes) == dict(in_process.sizes)
        assert through_scheduler.sizes["eig"] == spec.p
        assert bool(through_scheduler["done"].all()), "not every point is done"
        assert bool(in_process["done"].all())
        eigenvalues = through_scheduler["eigenvalues"].values
        assert eigenvalues.shape == (*spec.shape, spec.p)
        assert np.isfinite(eigenvalues).all()
        assert np.array_equal(eigenvalues, in_process["eigenvalues"].values)
