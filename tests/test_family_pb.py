"""The Pennington–Bahri family (``pipeline.families.pb``): sweep files, the cube, runs, failures, catalogue.

The cube of a tiny sweep must hold exactly what :func:`pipeline.pb.solve` and
:func:`pipeline.pb.sample` return when called directly with the sweep's parameters and the keyed
seeds ``(seed, i_phi, i_eps, trial)``, whether it is computed in this process, on a two-worker
cluster, or resumed after a failure.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import shutil
from itertools import takewhile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import build_cube
from test_runner import assert_same_cube, run
from test_sweeps_catalogue import MAX_MONTE_CARLO_FLOPS, MAX_THEORY_SOLVES, TRIALS_RANGE
from threadpoolctl import threadpool_limits

import pipeline.pb
from pipeline import runner, store
from pipeline.cli import main
from pipeline.errors import StoreError, SweepError
from pipeline.families import CellFailure, family_of
from pipeline.families.pb import MAX_DRAW_BYTES, PBFamily, PBSpec, cell_data
from pipeline.runner import RunReport
from pipeline.store import STATUS_DONE, STATUS_FAILED, open_cube
from pipeline.sweep import MAX_CELLS, MAX_P, load_sweep, parse_sweep, spec_from_dict

SWEEPS = Path(__file__).parents[1] / "sweeps"

# The tiny sweep: φ = 2 has an atom at 0 at ε = 0 and, in the product model, a hard edge at 0 at
# ε > 0 (density +inf there); σ ≠ 1 so that a σ dropped on the way shows.
PHI = (0.5, 2.0)
EPS = (0.0, 0.05, 0.2)
N, TRIALS, SEED, SIGMA, POINTS = 80, 2, 7, 1.5, 64
TINY = f"""
family: pb
name: tinypb
model: MODEL
sigma: {SIGMA}
N: {N}
trials: {TRIALS}
seed: {SEED}
grid:
  phi: {list(PHI)}
  eps: {list(EPS)}
theory: {{points: {POINTS}}}
"""
CELLS = len(PHI) * len(EPS)
# The theory's variables and the PBTheory attribute each holds.
THEORY_VARIABLES = {
    "density": "density",
    "density_x": "x",
    "index": "index",
    "atom_zero": "atom_zero",
    "edge_left": "edge_left",
    "edge_right": "edge_right",
    "mass": "mass",
    "converged": "converged",
    "residual": "residual",
    "quadrature_error": "quadrature_error",
}
SAMPLE_VARIABLES = {"eigenvalues": "eigenvalues", "mc_index": "index", "mc_zero_fraction": "zero_fraction"}


def tiny_text(model: str) -> str:
    return TINY.replace("MODEL", model)


def tiny_spec(model: str = "wigner") -> PBSpec:
    spec = parse_sweep(tiny_text(model))
    assert isinstance(spec, PBSpec)
    return spec


def build(spec: PBSpec, path: Path) -> Path:
    """The cube built in this process with BLAS on one thread, as the runner's workers run it."""
    with threadpool_limits(1):
        return build_cube(spec, path)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny_cubes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny sweep of each model, built in this process."""
    return {
        model: build(tiny_spec(model), tmp_path_factory.mktemp(model) / "tinypb.zarr")
        for model in pipeline.pb.MODELS
    }


# ----------------------------------------------------------------------------------------------
# Sweep files
# ----------------------------------------------------------------------------------------------


def test_a_valid_sweep_parses_and_round_trips() -> None:
    spec = parse_sweep(
        """
family: pb
name: demo
model: product
sigma: 2
N: 300
trials: 3
seed: 4
grid:
  phi: {start: 0.25, stop: 1.0, num: 3, scale: log}
  eps: {start: 0.0, stop: 0.2, num: 5}
theory: {points: 100}
"""
    )
    assert isinstance(spec, PBSpec) and spec.family == "pb"
    assert (spec.name, spec.model, spec.sigma, spec.N, spec.trials, spec.seed, spec.points) == (
        "demo",
        "product",
        2.0,
        300,
        3,
        4,
        100,
    )
    assert spec.grid.phi == pytest.approx((0.25, 0.5, 1.0), rel=1e-15)
    assert spec.grid.eps == pytest.approx((0.0, 0.05, 0.1, 0.15, 0.2), rel=1e-15)
    assert spec_from_dict(spec.to_dict()) == spec
    assert parse_sweep(yaml.safe_dump(spec.to_dict())) == spec
    assert spec.to_dict()["family"] == "pb"
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert spec.differences(spec) == []
    other = dataclasses.replace(spec, N=400)
    assert spec.differences(other) == ["N: 300 != 400"]
    # Defaults: wigner, σ = 1, one trial, seed 0, 400 points.
    default = parse_sweep("family: pb\nname: d\nN: 10\ngrid: {phi: [0.5], eps: [0.0]}")
    assert (default.model, default.sigma, default.trials, default.seed, default.points) == (
        "wigner",
        1.0,
        1,
        0,
        400,
    )


BASE: dict[str, Any] = yaml.safe_load(tiny_text("wigner"))


def changed(**changes: Any) -> dict[str, Any]:
    """BASE with top-level keys changed (a value of None removes the key); ``grid_phi`` etc. for
    the grid's and the theory's keys."""
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        section, _, sub = key.partition("_")
        target, key = (data[section], sub) if section in ("grid", "theory") and sub else (data, key)
        if value is None:
            del target[key]
        else:
            target[key] = value
    return data


BAD_INPUTS = [
    ("glm key", changed(p=400), "p", "unknown key"),
    ("missing N", changed(N=None), "N", "is required"),
    ("missing grid", changed(grid=None), "grid", "is required"),
    ("name", changed(name="a b"), "name", "must hold only letters"),
    ("model", changed(model="relu"), "model", "must be one of wigner, product, not 'relu'"),
    ("sigma zero", changed(sigma=0.0), "sigma", "must be > 0"),
    ("sigma nan", changed(sigma=float("nan")), "sigma", "must be finite"),
    ("sigma inf", changed(sigma=float("inf")), "sigma", "must be finite"),
    ("sigma text", changed(sigma="1"), "sigma", "must be a number, not str"),
    ("N small", changed(N=1), "N", "must be >= 2"),
    ("N float", changed(N=100.0), "N", "must be an integer, not float"),
    ("N huge", changed(N=MAX_P + 1), "N", f"must be <= {MAX_P}"),
    ("trials", changed(trials=0), "trials", "must be >= 1"),
    ("seed", changed(seed=-1), "seed", "must be >= 0"),
    ("phi negative", changed(grid_phi=[0.5, -1.0]), "grid.phi[1]", "must be > 0"),
    ("phi zero", changed(grid_phi={"start": 0, "stop": 1, "num": 3}), "grid.phi[0]", "must be > 0"),
    ("phi duplicate", changed(grid_phi=[0.5, 0.5]), "grid.phi[1]", "duplicate of grid.phi[0]"),
    ("phi log", changed(grid_phi={"start": 0, "stop": 1, "num": 3, "scale": "log"}), "grid.phi.start", "> 0"),
    ("eps negative", changed(grid_eps=[0.1, -0.1]), "grid.eps[1]", "must be >= 0"),
    ("eps nan", changed(grid_eps=[0.1, float("nan")]), "grid.eps[1]", "must be finite"),
    ("eps inf", changed(grid_eps=[float("inf")]), "grid.eps[0]", "must be finite"),
    ("eps empty", changed(grid_eps=[]), "grid.eps", "must not be empty"),
    ("eps num", changed(grid_eps={"start": 0, "stop": 1}), "grid.eps.num", "is required"),
    ("eps num negative", changed(grid_eps={"start": 0, "stop": 1, "num": -2}), "grid.eps.num", ">= 1"),
    ("grid key", changed(grid_c=[0.5]), "grid.c", "unknown key"),
    ("grid phi missing", changed(grid_phi=None), "grid.phi", "is required"),
    (
        "huge grid",
        changed(
            grid_phi={"start": 0.1, "stop": 1, "num": 1000}, grid_eps={"start": 0, "stop": 1, "num": 1000}
        ),
        "grid",
        f"more than the sanity limit of {MAX_CELLS}",
    ),
    ("phi tiny", changed(grid_phi=[0.5, 1e-9]), "grid.phi[1]", f"{MAX_DRAW_BYTES / 1e9:g} GB"),
    ("phi subnormal", changed(grid_phi=[5e-324]), "grid.phi[0]", "sanity limit"),
    ("phi huge", changed(grid_phi=[1000.0]), "grid.phi[0]", "0 data columns"),
    ("points", changed(theory_points=8), "theory.points", "must be >= 16"),
    ("points huge", changed(theory_points=10**6), "theory.points", "sanity limit"),
    ("theory key", changed(theory_method="x"), "theory.method", "unknown key"),
]


@pytest.mark.parametrize(
    ("data", "path", "reason"), [case[1:] for case in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_a_bad_sweep_is_refused_with_its_yaml_path(data: dict[str, Any], path: str, reason: str) -> None:
    with pytest.raises(SweepError) as info:
        parse_sweep(yaml.safe_dump(data))
    assert info.value.path == path
    assert reason in info.value.reason


def test_a_store_of_another_pb_sweep_is_refused(tmp_path: Path) -> None:
    spec = tiny_spec()
    store.create_store(tmp_path / "a.zarr", spec)
    store.check_store(tmp_path / "a.zarr", spec)
    other = dataclasses.replace(spec, N=90, seed=8)
    with pytest.raises(StoreError, match=r"N: 80 != 90; seed: 7 != 8"):
        store.check_store(tmp_path / "a.zarr", other)


def test_validate_prints_grid_tasks_and_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(tiny_text("wigner"))
    assert main(["validate", str(sweep)]) == 0
    lines = capsys.readouterr().out.splitlines()
    # Work of a draw: m N² for H₀ (m = round(N/φ) = 160 and 40) and (4/3) N³ for the eigenvalues.
    flops = sum(round(N / phi) * N**2 + 4 * N**3 / 3 for phi in PHI) * len(EPS) * TRIALS
    # Cheap draws: one Monte Carlo task per cell.
    assert lines == [
        "sweep tinypb: valid",
        f"grid: 2 phi × 3 eps × 2 trials, N = {N}, model wigner, sigma = 1.5",
        "points: 6 (phi × eps), 12 with trials",
        "tasks: 18 (6 theory, 6 Monte Carlo, 6 cell writes)",
        f"work: 6 theory solves of 64 points, 12 Monte Carlo draws, about {flops:.3g} flops",
        f"memory: about {8 * (N**2 + 160 * N) / 1e9:.3g} GB per Monte Carlo draw",
    ]
    sweep.write_text(tiny_text("wigner").replace("sigma: 1.5", "sigma: -1"))
    assert main(["validate", str(sweep)]) == 2
    assert "sigma: must be > 0" in capsys.readouterr().err


def test_cheap_draws_share_a_part_and_costly_ones_get_one_each() -> None:
    family = PBFamily()
    cheap = tiny_spec()
    costly = dataclasses.replace(cheap, N=2000)
    assert family.parts(cheap, (0, 1)) == [("theory",), ("montecarlo", 0, 2)]
    assert family.parts(costly, (0, 1)) == [("theory",), ("montecarlo", 0, 1), ("montecarlo", 1, 2)]
    # The cost model within a factor 2 (what batching tolerates) of a cell measured on one core:
    # two draws at N = 2000, φ = 0.5 took 2 s each (1.7 s at φ = 0.75, 2.4 s at φ = 0.25).
    measured = 2 * 2.0
    assert measured / 2 <= family.cell_seconds(costly, (0, 1)) <= 2 * measured
    assert (
        family.part_name(costly, (1, 2), ("montecarlo", 1, 2)) == "Monte Carlo at phi[1], eps[2], trials 1..1"
    )


# ----------------------------------------------------------------------------------------------
# The cube, built in this process
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", pipeline.pb.MODELS)
def test_cube_holds_solve_and_sample_called_directly(model: str, tiny_cubes: dict[str, Path]) -> None:
    cube = open_cube(tiny_cubes[model]).load()
    assert cube.attrs["family"] == "pb"
    assert (cube.attrs["pb_model"], cube.attrs["sigma"], cube.attrs["N"]) == (model, SIGMA, N)
    assert cube["phi"].values.tolist() == list(PHI) and cube["eps"].values.tolist() == list(EPS)
    assert cube["trial"].values.tolist() == list(range(TRIALS))
    assert cube.sizes["eig"] == N and cube.sizes["x"] == POINTS
    assert cube["critical_energy"].dims == ("phi",)
    expected = [pipeline.pb.critical_energy(phi, model, sigma=SIGMA) for phi in PHI]
    assert np.array_equal(cube["critical_energy"].values, expected)

    checked: set[str] = set()
    for i_phi, phi in enumerate(PHI):
        for i_eps, eps in enumerate(EPS):
            point = cube.isel(phi=i_phi, eps=i_eps)
            with threadpool_limits(1):
                theory = pipeline.pb.solve(phi, eps, model, sigma=SIGMA, points=POINTS)
            assert theory.converged, (phi, eps)
            for name, attribute in THEORY_VARIABLES.items():
                value = getattr(theory, attribute)
                assert np.array_equal(point[name].values, value, equal_nan=True), (phi, eps, name)
                checked.add(name)
            assert int(point["bulk_count"]) == len(theory.edges)
            assert str(point["note"].values) == theory.note
            checked |= {"bulk_count", "note"}
            for trial in range(TRIALS):
                with threadpool_limits(1):
                    sample = pipeline.pb.sample(phi, eps, N, (SEED, i_phi, i_eps, trial), model, sigma=SIGMA)
                for name, attribute in SAMPLE_VARIABLES.items():
                    value = getattr(sample, attribute)
                    assert np.array_equal(point[name].values[trial], value), (phi, eps, trial, name)
                    checked.add(name)
    assert checked == set(cube.data_vars) - {"status", "error", "done"}
    assert bool(cube["done"].all()) and bool((cube["status"] == STATUS_DONE).all())
    assert all(str(error) == "" for error in cube["error"].values.ravel())
    if model == "product":
        # φ = 2, ε > 0: the hard edge at 0 (+inf on the grid), which verify accepts.
        assert np.isinf(cube["density"].values[1, 1:]).any()
    assert store.verify(tiny_cubes[model]) == (CELLS * TRIALS, [])


def test_summary_status_and_query_read_the_cube(
    tiny_cubes: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tiny_cubes["wigner"]
    summary = store.summary(path)
    assert summary["shape"] == {"phi": 2, "eps": 3, "trial": 2}
    assert (summary["total"], summary["done"], summary["failed"], summary["pending"]) == (12, 12, 0, 0)
    assert list(summary["axes"]) == ["phi", "eps"]
    assert [(e["value"], e["total"], e["done"]) for e in summary["axes"]["phi"]] == [(0.5, 6, 6), (2.0, 6, 6)]
    assert [(e["value"], e["total"], e["done"]) for e in summary["axes"]["eps"]] == [
        (0.0, 4, 4),
        (0.05, 4, 4),
        (0.2, 4, 4),
    ]

    assert main(["status", str(path)]) == 0
    out = capsys.readouterr().out
    assert "cells: 6 done, 0 failed, 0 pending, 6 total" in out
    assert "phi:\n  0.5: 6 done, 0 failed, 6 total\n  2.0: 6 done, 0 failed, 6 total\neps:\n" in out

    assert main(["query", str(path), "--var", "index", "--sel", "phi=0.5", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    records = document["records"]
    assert [record["eps"] for record in records] == list(EPS)
    assert [record["index"] for record in records] == open_cube(path)["index"].values[0].tolist()
    assert all(record["phi"] == 0.5 for record in records)
    assert main(["query", str(path), "--var", "index", "--sel", "phi=0.5"]) == 0
    assert "critical_energy" in capsys.readouterr().out


def test_verify_names_done_points_with_broken_results(tiny_cubes: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "broken.zarr"
    shutil.copytree(tiny_cubes["wigner"], path)
    spec = tiny_spec()
    family = family_of(spec)
    cell = (1, 2)
    with threadpool_limits(1):
        results = [runner.part_task(spec, cell, part, 1) for part in family.parts(spec, cell)]
    data = family.assemble(spec, cell, results)
    arrays = dict(data.arrays)
    arrays["eigenvalues"] = arrays["eigenvalues"].copy()
    arrays["eigenvalues"][0, 0, 1] = arrays["eigenvalues"][0, 0, 1][::-1]
    arrays["index"] = np.full_like(arrays["index"], 1.5)
    store.write_cell(path, spec, cell, dataclasses.replace(data, arrays=arrays))
    checked, problems = store.verify(path)
    where = "phi[1] = 2, eps[2] = 0.2"
    assert checked == CELLS * TRIALS
    assert sorted(problems) == sorted(
        [
            f"{where}, trial 1: eigenvalues not ascending",
            f"{where}, trial 0: theory index missing or outside [0, 1]",
            f"{where}, trial 1: theory index missing or outside [0, 1]",
        ]
    )


def test_a_failed_draw_or_an_unconverged_theory_fails_its_points_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tiny_spec()
    sample, solve = pipeline.pb.sample, pipeline.pb.solve

    def failing_sample(phi: float, eps: float, n: int, seed: Any, *args: Any, **kwargs: Any) -> Any:
        if tuple(seed) == (SEED, 0, 2, 1):
            raise MemoryError("no room")
        return sample(phi, eps, n, seed, *args, **kwargs)

    def unconverged(phi: float, eps: float, *args: Any, **kwargs: Any) -> Any:
        result = solve(phi, eps, *args, **kwargs)
        return dataclasses.replace(result, converged=False, note="wrong roots") if eps == 0.05 else result

    path = tmp_path / "cube.zarr"
    store.create_store(path, spec)
    monkeypatch.setattr(pipeline.pb, "sample", failing_sample)
    monkeypatch.setattr(pipeline.pb, "solve", unconverged)
    outcomes = [runner.cell_task(str(path), spec, cell, 2) for cell in ((0, 2), (1, 1), (1, 2))]
    assert [outcome.failed_points for outcome in outcomes] == [1, 2, 0]
    assert outcomes[0].messages == (
        "Monte Carlo at phi[0], eps[2], trial 1: MemoryError: no room (2 attempts)",
    )
    assert outcomes[1].messages == ("theory at phi[1], eps[1]: did not converge",)
    cube = open_cube(path).load()
    assert cube["done"].values[0, 2].tolist() == [True, False]
    assert cube["status"].values[0, 2].tolist() == [STATUS_DONE, STATUS_FAILED]
    assert str(cube["error"].values[0, 2, 1]) == f"montecarlo: {outcomes[0].messages[0]}"
    assert np.isnan(cube["eigenvalues"].values[0, 2, 1]).all()
    # The unconverged theory is written for inspection, never marked done.
    assert not cube["done"].values[1, 1].any() and not bool(cube["converged"].values[1, 1])
    error = str(cube["error"].values[1, 1, 0])
    assert error.startswith("theory: did not converge (mass ") and error.endswith(": wrong roots")
    assert cube["done"].values[1, 2].all()


def test_both_failures_of_a_point_are_named() -> None:
    spec = tiny_spec()
    theory, draw = CellFailure("theory at phi[0], eps[0]: boom"), CellFailure("Monte Carlo ...: bust")
    data = cell_data(spec, (0, 0), theory, [draw, draw])
    assert data.errors.tolist() == [
        [["theory: theory at phi[0], eps[0]: boom; montecarlo: Monte Carlo ...: bust"] * 2]
    ]
    assert data.messages == (theory.message, draw.message)


def test_results_of_the_wrong_kind_or_shape_are_refused() -> None:
    spec = tiny_spec()
    family = PBFamily()
    theory = pipeline.pb.solve(0.5, 0.0, points=POINTS)
    good = pipeline.pb.sample(0.5, 0.0, N, 0)
    with pytest.raises(TypeError, match="expected a PBTheory"):
        cell_data(spec, (0, 0), good, [good, good])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"theory.x: expected shape \(64,\)"):
        cell_data(spec, (0, 0), pipeline.pb.solve(0.5, 0.0, points=32), [good, good])
    with pytest.raises(ValueError, match=r"montecarlo\[1\].eigenvalues: expected shape \(80,\)"):
        cell_data(spec, (0, 0), theory, [good, pipeline.pb.sample(0.5, 0.0, N - 1, 0)])
    with pytest.raises(ValueError, match="expected 2 results"):
        cell_data(spec, (0, 0), theory, [good])
    with pytest.raises(ValueError, match="expected 2 results"):
        family.assemble(spec, (0, 0), [theory])
    with pytest.raises(ValueError, match="expected 2 trials' results"):
        family.assemble(spec, (0, 0), [theory, [good]])


# ----------------------------------------------------------------------------------------------
# Runs on a cluster
# ----------------------------------------------------------------------------------------------


@pytest.mark.distributed
def test_two_workers_give_the_cube_built_in_process(
    tiny_cubes: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tiny_spec()
    batched, fine = tmp_path / "batched.zarr", tmp_path / "fine.zarr"
    with runner._client(2, None, ":0") as client:
        address = client.scheduler.address
        report = run(spec, batched, scheduler=address)
        assert report == RunReport(computed_cells=CELLS, skipped_cells=0, failed_points=0, store=str(batched))
        # Every cell its own graph: theory and draws as separate tasks, on either worker.
        monkeypatch.setattr(runner, "_CELLS_PER_TASK", 0)
        assert run(spec, fine, scheduler=address).computed_cells == CELLS
        again = run(spec, fine, scheduler=address)
    assert (again.computed_cells, again.skipped_cells, again.failed_points) == (0, CELLS, 0)
    assert_same_cube(batched, tiny_cubes["wigner"])
    assert_same_cube(fine, tiny_cubes["wigner"])


@pytest.mark.distributed
def test_a_failing_theory_fails_its_points_and_is_retried_on_demand(
    tiny_cubes: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import LocalCluster

    spec = tiny_spec()
    solve = pipeline.pb.solve
    solved: list[tuple[float, float]] = []

    def failing(phi: float, eps: float, *args: Any, **kwargs: Any) -> Any:
        solved.append((phi, eps))
        if (phi, eps) == (2.0, 0.05):
            raise FloatingPointError("the roots diverged")
        return solve(phi, eps, *args, **kwargs)

    path = tmp_path / "tinypb.zarr"
    # Threads in this process (the workers see the patched solver), BLAS on one thread.
    with (
        threadpool_limits(1),
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster,
    ):
        monkeypatch.setattr(pipeline.pb, "solve", failing)
        report = run(spec, path, scheduler=cluster.scheduler_address, attempts=2)
        assert solved.count((2.0, 0.05)) == 2
        assert (report.computed_cells, report.failed_points) == (CELLS, TRIALS)
        message = "theory at phi[1], eps[1]: FloatingPointError: the roots diverged (2 attempts)"
        assert report.failures == (message,)
        cube = open_cube(path).load()
        assert (cube["status"].values[1, 1] == STATUS_FAILED).all() and not cube["done"].values[1, 1].any()
        assert [str(error) for error in cube["error"].values[1, 1]] == [f"theory: {message}"] * TRIALS
        assert int(cube["done"].sum()) == CELLS * TRIALS - TRIALS
        # The draws of the failed cell are written all the same.
        reference = open_cube(tiny_cubes["wigner"])["eigenvalues"].values[1, 1]
        assert np.array_equal(cube["eigenvalues"].values[1, 1], reference)
        errors = store.summary(path)["errors"]
        assert [(e["phi"], e["eps"], e["trial"]) for e in errors] == [(2.0, 0.05, 0), (2.0, 0.05, 1)]

        monkeypatch.setattr(pipeline.pb, "solve", solve)
        again = run(spec, path, scheduler=cluster.scheduler_address)
        assert (again.computed_cells, again.earlier_failed_points, again.ok) == (0, TRIALS, False)
        retried = run(spec, path, scheduler=cluster.scheduler_address, retry_failed=True)
        assert (retried.computed_cells, retried.ok) == (1, True)
    assert_same_cube(path, tiny_cubes["wigner"])


# ----------------------------------------------------------------------------------------------
# The catalogue: sweeps/pb_*.yaml
# ----------------------------------------------------------------------------------------------

CATALOGUE = {"pb_wigner": "wigner", "pb_product": "product"}
# Monte Carlo sizes of the catalogue's pb sweeps: an index resolved to 1/N = 0.002, each sweep a
# minute or less on 2 cores (the GLM catalogue's limits on trials, flops and theory solves hold too).
N_RANGE = (500, 1000)
# Critical energies the headers quote, with half a unit of their last digit.
QUOTED = {
    "pb_wigner": {0.25: (0.0435, 5e-5), 0.5: (0.0113, 5e-5), 0.75: (0.0013, 5e-5)},
    "pb_product": {0.25: (0.627, 5e-4), 0.5: (0.0810, 5e-5), 0.75: (0.0063, 5e-5)},
}
# The neighbouring grid energies around each ε_c that the headers name.
BRACKETS = {
    "pb_wigner": {0.25: (0.04, 0.05), 0.5: (0.01, 0.015), 0.75: (0.001, 0.002)},
    "pb_product": {0.25: (0.5, 0.8), 0.5: (0.05, 0.1), 0.75: (0.005, 0.008)},
}
# The product model's index and atom at φ >= 2 are exact (Sylvester's law of inertia); solve
# reproduces them to rounding, ~1e-16, and its quadrature error estimate is below 1e-10.
EXACT = 1e-12


@pytest.mark.parametrize("name", CATALOGUE)
def test_catalogue_sweep_parses_is_small_and_says_what_it_shows(name: str) -> None:
    path = SWEEPS / f"{name}.yaml"
    spec = load_sweep(path)
    assert isinstance(spec, PBSpec) and spec.name == name and spec.model == CATALOGUE[name]
    work = spec.work_estimate()
    assert work["theory_solves"] <= MAX_THEORY_SOLVES
    assert work["monte_carlo_flops"] <= MAX_MONTE_CARLO_FLOPS
    assert N_RANGE[0] <= spec.N <= N_RANGE[1]
    assert TRIALS_RANGE[0] <= spec.trials <= TRIALS_RANGE[1]
    header = "\n".join(takewhile(lambda line: line.startswith("#"), path.read_text("utf-8").splitlines()))
    assert header.count("\n") >= 4, "a header comment of a few lines, before any key"
    assert "Pennington & Bahri" in header and "pennington_bahri.md" in header
    assert "Look at:" in header
    assert f"`hessweep run sweeps/{path.name} --workers 2`" in header
    assert "Run time: " in header and "RUNTIME" not in header


@pytest.mark.parametrize("name", CATALOGUE)
def test_catalogue_theory_shows_the_index_leaving_zero_at_the_critical_energy(name: str) -> None:
    spec = load_sweep(SWEEPS / f"{name}.yaml")
    assert isinstance(spec, PBSpec)
    index = np.empty((len(spec.grid.phi), len(spec.grid.eps)))
    for i, phi in enumerate(spec.grid.phi):
        critical = pipeline.pb.critical_energy(phi, spec.model, sigma=spec.sigma)
        for j, eps in enumerate(spec.grid.eps):
            result = pipeline.pb.solve(phi, eps, spec.model, sigma=spec.sigma, points=spec.points)
            assert result.converged, (phi, eps)
            index[i, j] = result.index
            if eps <= critical:
                # No negative part: the support starts at or right of 0.
                assert result.index == 0.0 and result.edge_left >= 0.0, (phi, eps)
            else:
                assert result.index > 0.0 and result.edge_left < 0.0, (phi, eps)
        eps = np.array(spec.grid.eps)
        after = index[i, eps > critical]
        assert after.size >= 2 and np.all(np.diff(after) >= -EXACT), phi
        if phi < 1:
            quoted, digits = QUOTED[name][phi]
            assert abs(critical - quoted) <= digits, (phi, critical)
            below, above = eps[eps <= critical].max(), eps[eps > critical].min()
            assert (below, above) == BRACKETS[name][phi]
            assert np.all(np.diff(after) > 0), phi
        else:
            assert critical == 0.0 and eps[0] == 0.0
    assert set(QUOTED[name]) == {phi for phi in spec.grid.phi if phi < 1}

    if spec.model == "wigner":
        # The index rises sooner (is larger at each energy) the larger φ.
        assert np.all(np.diff(index, axis=0) >= 0)
    else:
        # ε_c above the Wigner model's; at φ = 5/2 α = 1/(2φ) and the atom 1 − 2/φ at every ε > 0.
        for phi in spec.grid.phi:
            if phi < 1:
                assert pipeline.pb.critical_energy(phi, "product") > pipeline.pb.critical_energy(
                    phi, "wigner"
                )
        (i,) = [i for i, phi in enumerate(spec.grid.phi) if phi >= 2]
        phi = spec.grid.phi[i]
        assert np.abs(index[i, 1:] - 1 / (2 * phi)).max() <= EXACT
        for eps, atom in ((spec.grid.eps[0], 1 - 1 / phi), (spec.grid.eps[-1], 1 - 2 / phi)):
            result = pipeline.pb.solve(phi, eps, "product", sigma=spec.sigma, points=spec.points)
            assert abs(result.atom_zero - atom) <= EXACT, eps


def test_status_lists_failed_points_by_phi_eps_and_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tiny_spec()
    solve = pipeline.pb.solve

    def unconverged(*args: Any, **kwargs: Any) -> Any:
        return dataclasses.replace(solve(*args, **kwargs), converged=False, note="wrong roots")

    path = tmp_path / "cube.zarr"
    store.create_store(path, spec)
    monkeypatch.setattr(pipeline.pb, "solve", unconverged)
    runner.cell_task(str(path), spec, (1, 2), 1)
    assert main(["status", str(path)]) == 0
    assert "phi=2.0, eps=0.2, trial=0: theory: did not converge" in capsys.readouterr().out
