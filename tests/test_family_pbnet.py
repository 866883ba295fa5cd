"""The network experiment of Pennington & Bahri (``family: pbnet``): the sweep schema, the cube against
:func:`pipeline.pbnet.survey`, a cluster run, unconverged and failed runs, and ``sweeps/pb_network.yaml``."""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from itertools import takewhile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
import zarr
from conftest import build_cube
from test_runner import assert_same_cube, run
from threadpoolctl import threadpool_limits

from pipeline import pbnet, runner, store
from pipeline.cli import main
from pipeline.errors import SweepError
from pipeline.families import FAMILIES, CellFailure
from pipeline.families.pbnet import (
    MAX_ITERATIONS,
    MAX_RUN_BYTES,
    MAX_WIDTH,
    VARIABLES,
    PBNetFamily,
    PBNetSpec,
    search,
)
from pipeline.pbnet.critical import (
    CONVERGENCE_TOLERANCE,
    MAX_DESCENT_ITERATIONS,
    MAX_J_ITERATIONS,
    ZERO_TOLERANCE,
)
from pipeline.store import STATUS_DONE, STATUS_FAILED, open_cube
from pipeline.sweep import MAX_CELLS, load_sweep, parse_sweep, spec_from_dict

SWEEPS = Path(__file__).parents[1] / "sweeps"
# The sweep of the catalogue that this family's tests check (sweeps/<name>.yaml).
NETWORK = "pb_network"
# The paper's ratios (Sec. 6.4, Fig. 6) at its width.
PAPER_PHI = (1 / 16, 1 / 8, 1 / 4, 1 / 3, 1 / 2, 2 / 3)
PAPER_WIDTH = 16

# A tiny sweep: n = 4 (32 parameters), runs of 0.1-1 s.
N, TRIALS, SEED = 4, 2, 3
PHI = (0.25, 0.5, 2 / 3)
TINY = f"""
family: pbnet
name: tinynet
n: {N}
trials: {TRIALS}
seed: {SEED}
grid:
  phi: {list(PHI)}
"""
POINTS = len(PHI) * TRIALS
# Variables copied from the NetworkCriticalPoint attribute of the same name.
COPIED = set(VARIABLES) - {"gauss_newton_mean"}


def tiny_spec(text: str = TINY) -> PBNetSpec:
    spec = parse_sweep(text)
    assert isinstance(spec, PBNetSpec)
    return spec


def build(spec: PBNetSpec, path: Path) -> Path:
    """The cube built in this process with BLAS on one thread, as the runner's workers run it."""
    with threadpool_limits(1):
        return build_cube(spec, path)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny_cube(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tiny_spec(), tmp_path_factory.mktemp("pbnet") / "tinynet.zarr")


@pytest.fixture(scope="module")
def tiny_survey() -> tuple[pbnet.NetworkCriticalPoint, ...]:
    """What the tiny sweep's cube must hold: survey called directly, BLAS on one thread."""
    with threadpool_limits(1):
        return pbnet.survey(PHI, TRIALS, SEED, n=N)


def assert_cube_is(path: Path, points: Sequence[pbnet.NetworkCriticalPoint]) -> None:
    """Every variable of the cube at ``path`` equal, bit for bit, to the runs ``points`` of a survey;
    every point done."""
    cube = open_cube(path).load()
    assert len(points) == POINTS
    for point in points:
        _, i_phi, trial = point.seed
        at = cube.isel(phi=i_phi, trial=trial)
        for name in COPIED:
            assert np.array_equal(at[name].values, getattr(point, name)), (i_phi, trial, name)
        # σ = tr H₀ / 2n² from the run's own data, computed here independently of the family.
        problem = pbnet.draw_problem(point.phi, point.seed, n=N)
        with threadpool_limits(1):
            gauss_newton, _ = pbnet.hessian_parts(point.theta, problem.X, problem.Y)
        assert at["gauss_newton_mean"].values == np.trace(gauss_newton) / (2 * N**2), (i_phi, trial)
    assert cube["m"].values.tolist() == [round(2 * N / phi) for phi in PHI]
    assert bool(cube["done"].all()) and bool((cube["status"] == STATUS_DONE).all())
    assert all(str(error) == "" for error in cube["error"].values.ravel())


# ----------------------------------------------------------------------------------------------
# The sweep file
# ----------------------------------------------------------------------------------------------


def test_a_spec_round_trips_with_find_critical_points_defaults() -> None:
    assert isinstance(FAMILIES["pbnet"], PBNetFamily)
    spec = tiny_spec()
    assert (spec.n, spec.trials, spec.seed, spec.grid.phi) == (N, TRIALS, SEED, PHI)
    assert spec_from_dict(spec.to_dict()) == spec
    assert parse_sweep(yaml.safe_dump(spec.to_dict())) == spec
    assert spec.to_dict()["family"] == "pbnet"
    minimal = tiny_spec("family: pbnet\nname: m\ngrid: {phi: [0.5]}")
    assert (minimal.n, minimal.trials, minimal.seed) == (PAPER_WIDTH, 1, 0)
    assert minimal.to_dict()["search"] == {
        "tolerance": CONVERGENCE_TOLERANCE,
        "zero_tolerance": ZERO_TOLERANCE,
        "init_scale": 1.0,
        "max_descent_iterations": MAX_DESCENT_ITERATIONS,
        "max_j_iterations": MAX_J_ITERATIONS,
    }
    other = tiny_spec(TINY.replace("trials: 2", "trials: 4") + "search: {init_scale: 0.5}\n")
    assert spec.differences(other) == ["trials: 2 != 4", "search.init_scale: 1.0 != 0.5"]
    assert spec.differences(spec) == []


BASE: dict[str, Any] = yaml.safe_load(TINY)


def _with(path: str, value: Any) -> dict[str, Any]:
    """BASE with the entry at a dotted ``path`` set to ``value``."""
    data = yaml.safe_load(yaml.safe_dump(BASE))
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return data


BAD = [
    # (field set, value, the YAML path refused, words of the reason)
    ("N", 400, "N", "unknown key"),
    ("grid.eps", [0.1], "grid.eps", "unknown key"),
    ("search.precondition", False, "search.precondition", "unknown key"),
    ("name", "a b", "name", "letters"),
    ("n", 1, "n", ">= 2"),
    ("n", 16.0, "n", "integer"),
    ("n", MAX_WIDTH + 1, "n", f"<= {MAX_WIDTH}"),
    ("trials", 0, "trials", ">= 1"),
    ("seed", -1, "seed", ">= 0"),
    ("grid.phi", [0.5, 0.5], "grid.phi[1]", "duplicate"),
    ("grid.phi", [0.5, -0.5], "grid.phi[1]", "must be > 0"),
    ("grid.phi", [0.0], "grid.phi[0]", "must be > 0"),
    ("grid.phi", [math.nan], "grid.phi[0]", "finite"),
    ("grid.phi", [], "grid.phi", "empty"),
    ("grid.phi", "0.5", "grid.phi", "a list"),
    ("grid.phi", [0.5, 100.0], "grid.phi[1]", "0 samples"),
    ("grid.phi", [1e-7], "grid.phi[0]", f"sanity limit of {MAX_RUN_BYTES / 1e9:g} GB"),
    ("grid.phi", [5e-324], "grid.phi[0]", "sanity limit"),
    ("grid.phi", {"start": 0.1, "stop": 1, "num": 10**6}, "grid", f"sanity limit of {MAX_CELLS}"),
    ("grid", {}, "grid.phi", "is required"),
    ("search.tolerance", 1e-5, "search.tolerance", "<= 1e-06"),
    ("search.tolerance", 0.0, "search.tolerance", "> 0"),
    ("search.tolerance", "1e-6", "search.tolerance", "with a dot"),
    ("search.zero_tolerance", 1.0, "search.zero_tolerance", "< 1"),
    ("search.zero_tolerance", -1e-6, "search.zero_tolerance", ">= 0"),
    ("search.init_scale", 0.0, "search.init_scale", "> 0"),
    ("search.init_scale", math.inf, "search.init_scale", "finite"),
    ("search.max_descent_iterations", -1, "search.max_descent_iterations", ">= 0"),
    ("search.max_j_iterations", MAX_ITERATIONS + 1, "search.max_j_iterations", "sanity limit"),
    ("search.max_j_iterations", 1.5, "search.max_j_iterations", "integer"),
]


@pytest.mark.parametrize(("where", "value", "path", "reason"), BAD, ids=[f"{c[0]}={c[1]!r}" for c in BAD])
def test_a_bad_field_is_refused_with_its_path(where: str, value: Any, path: str, reason: str) -> None:
    with pytest.raises(SweepError) as caught:
        parse_sweep(yaml.safe_dump(_with(where, value)))
    assert caught.value.path == path
    assert reason in caught.value.reason


def test_run_refuses_a_bad_sweep_in_one_line_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tmp_path / "bad.yaml"
    sweep.write_text(TINY.replace("n: 4", "n: 400"))
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(sweep)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"hessweep: n: must be <= {MAX_WIDTH} (a sanity limit: the Hessian is 2n² × 2n², diagonalised in "
        "every preconditioner cycle)"
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["bad.yaml"]


def test_validate_describes_the_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(TINY)
    assert main(["validate", str(sweep)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [
        "sweep tinynet: valid",
        "grid: 3 phi × 2 trials, n = 4 (32 parameters), m = 12..32 samples",
    ]
    assert lines[2].startswith(f"points: {POINTS} runs")
    assert lines[3].startswith("unconverged runs (J above 1e-06") and "converged = false" in lines[3]
    assert lines[4] == "tasks: 3 cells (one per phi) of 6 parts, and 3 cell writes"


def test_every_run_is_its_own_part() -> None:
    family = PBNetFamily()
    network = load_sweep(SWEEPS / f"{NETWORK}.yaml")
    for spec in (tiny_spec(), network):
        for cell in family.layout(spec).cells():
            assert family.parts(spec, cell) == [("search", t, t + 1) for t in range(spec.trials)]
    assert family.part_name(network, (2,), ("search", 5, 6)) == "search at phi[2] = 0.25, trial 5"
    # The cost model within a factor 2 of the mean of 12 runs at n = 16 on one core (4.8 s, at the
    # paper's six φ): the runner's planning and `hessweep validate` need no better.
    measured = 4.8 * network.trials
    modelled = sum(family.cell_seconds(network, cell) for cell in family.layout(network).cells()) / 6
    assert measured / 2 <= modelled <= 2 * measured


# ----------------------------------------------------------------------------------------------
# The cube
# ----------------------------------------------------------------------------------------------


def test_the_cube_is_survey_bit_for_bit(
    tiny_cube: Path, tiny_survey: tuple[pbnet.NetworkCriticalPoint, ...]
) -> None:
    assert_cube_is(tiny_cube, tiny_survey)
    cube = open_cube(tiny_cube)
    assert cube.attrs["family"] == "pbnet" and (cube.attrs["n"], cube.attrs["parameters"]) == (N, 2 * N**2)
    assert dict(cube.sizes) == {"phi": len(PHI), "trial": TRIALS, "eig": 2 * N**2}
    assert cube["phi"].values.tolist() == list(PHI) and cube["m"].dims == ("phi",)
    assert cube["eigenvalues"].dims == ("phi", "trial", "eig")
    assert all(cube[name].dims == ("phi", "trial") for name in VARIABLES if name != "eigenvalues")
    # At n = 4 half the runs stall above J = 1e-6: stored with converged = false, done all the same.
    assert {point.converged for point in tiny_survey} == {True, False}
    assert store.verify(tiny_cube) == (POINTS, [])


@pytest.mark.distributed
def test_two_workers_give_the_same_cube(
    tiny_cube: Path, tiny_survey: tuple[pbnet.NetworkCriticalPoint, ...], tmp_path: Path
) -> None:
    path = tmp_path / "tinynet.zarr"
    report = run(tiny_spec(), path, workers=2)  # type: ignore[arg-type]
    assert report.ok and (report.computed_cells, report.failed_points) == (len(PHI), 0)
    assert_same_cube(path, tiny_cube)
    assert_cube_is(path, tiny_survey)


def test_an_unconverged_run_is_stored_done_and_flagged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One iteration on J from the start itself (no descent) cannot bring J from ~1e-2 to 1e-6.
    options = {"max_descent_iterations": 0, "max_j_iterations": 1}
    text = TINY + f"search: {options}\n"
    spec = tiny_spec(text)
    path = build(spec, tmp_path / "short.zarr")
    with threadpool_limits(1):
        points = pbnet.survey(PHI, TRIALS, SEED, n=N, **options)
    assert_cube_is(path, points)
    cube = open_cube(path)
    assert not cube["converged"].values.any()
    assert (cube["gradient_norm_sq"].values > CONVERGENCE_TOLERANCE).all()
    assert all(not point.converged for point in points)
    assert store.verify(path) == (POINTS, [])
    summary = store.summary(path)
    assert (summary["done"], summary["failed"]) == (POINTS, 0)
    # Flagged: in the cube's attributes and in what `hessweep validate` says.
    assert "converged = false" in cube.attrs["converged_note"]
    assert any("kept and done with converged = false" in line for line in PBNetFamily().describe(spec))
    # And counted by `hessweep status`.
    (remark,) = summary["remarks"]
    assert remark["count"] == POINTS and "kept with converged = false" in remark["what"]
    assert main(["status", str(path)]) == 0
    assert f"remark: {POINTS} done points: J = ‖∇L‖² stayed above 1e-06" in capsys.readouterr().out


def test_a_run_that_raises_is_retried_then_fails_its_point(
    tiny_cube: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tiny_spec()
    real = pbnet.find_critical_point
    calls: list[Any] = []

    def failing(phi: float, seed: Any, **options: Any) -> pbnet.NetworkCriticalPoint:
        calls.append(seed)
        if seed == (SEED, 1, 1):
            raise FloatingPointError("the search diverged")
        return real(phi, seed, **options)

    path = tmp_path / "tinynet.zarr"
    store.create_store(path, spec)
    monkeypatch.setattr(pbnet, "find_critical_point", failing)
    with threadpool_limits(1):
        outcome = runner.cell_task(str(path), spec, (1,), 2)
    assert calls.count((SEED, 1, 1)) == 2
    assert outcome.failed_points == 1
    assert outcome.messages == (
        "search at phi[1] = 0.5, trial 1: FloatingPointError: the search diverged (2 attempts)",
    )
    cube = open_cube(path).load()
    assert cube["done"].values[1].tolist() == [True, False]
    assert cube["status"].values[1, 1] == STATUS_FAILED
    assert str(cube["error"].values[1, 1]) == f"search: {outcome.messages[0]}"
    assert np.isnan(cube["eigenvalues"].values[1, 1]).all()
    # Its neighbour in the same cell is the reference's, bit for bit.
    reference = open_cube(tiny_cube)["eigenvalues"].values[1, 0]
    assert np.array_equal(cube["eigenvalues"].values[1, 0], reference)


# Corruptions of one done point (phi[1], trial 0), to values no run gives (an index that is not a
# multiple of 1/32, a negative count), and the problem verify must report for each.
CORRUPTIONS = [
    ("index", 0.3, "index, negative, nullity or zero_threshold disagrees with the eigenvalues"),
    ("nullity", -1, "index, negative, nullity or zero_threshold disagrees with the eigenvalues"),
    ("converged", "flipped", "converged disagrees with gradient_norm_sq <= 1e-06"),
    ("energy", math.nan, "energy missing or negative"),
    ("gauss_newton_mean", -1.0, "gauss_newton_mean missing or negative (H0 is positive semidefinite)"),
    ("message", "", "message missing"),
]


@pytest.mark.parametrize(("name", "value", "problem"), CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_verify_finds_a_corrupted_point(
    tiny_cube: Path, tmp_path: Path, name: str, value: Any, problem: str
) -> None:
    path = shutil.copytree(tiny_cube, tmp_path / "copy.zarr")
    array = zarr.open_group(path, mode="r+")[name]
    assert isinstance(array, zarr.Array)
    array[1, 0] = (not array[1, 0]) if value == "flipped" else value
    assert store.verify(path) == (POINTS, [f"phi[1] = 0.5, trial 0: {problem}"])


def test_assemble_refuses_wrong_results() -> None:
    spec = tiny_spec()
    family = PBNetFamily()
    with pytest.raises(ValueError, match="one per part"):
        family.assemble(spec, (0,), [])
    with pytest.raises(ValueError, match="expected 1 trials' results"):
        family.assemble(spec, (0,), [[CellFailure("x"), CellFailure("y")]] * TRIALS)
    with pytest.raises(TypeError, match="NetworkRun"):
        family.assemble(spec, (0,), [["not a run"]] * TRIALS)
    wider = tiny_spec(TINY.replace("n: 4", "n: 5"))
    with threadpool_limits(1):
        wrong = search(wider, 0, 0)  # 50 eigenvalues in a cube of 32
    with pytest.raises(ValueError, match="expected 32 eigenvalues"):
        family.assemble(spec, (0,), [[wrong]] * TRIALS)


# ----------------------------------------------------------------------------------------------
# sweeps/pb_network.yaml
# ----------------------------------------------------------------------------------------------


def test_pb_network_is_the_papers_experiment() -> None:
    path = SWEEPS / f"{NETWORK}.yaml"
    spec = load_sweep(path)
    assert isinstance(spec, PBNetSpec) and spec.name == NETWORK
    assert spec.n == PAPER_WIDTH and spec.parameters == 512
    # The values in the file are the fractions to double precision (1/3 and 2/3 rounded).
    assert spec.grid.phi == PAPER_PHI
    assert [spec.samples(i) for i in range(len(PAPER_PHI))] == [512, 256, 128, 96, 64, 48]
    assert spec.search.tolerance == CONVERGENCE_TOLERANCE
    header = "\n".join(takewhile(lambda line: line.startswith("#"), path.read_text("utf-8").splitlines()))
    assert header.count("\n") >= 4, "a header comment of a few lines, before any key"
    assert "Pennington & Bahri" in header and "pennington_bahri.md" in header
    assert "Look at:" in header
    assert f"`hessweep run sweeps/{path.name} --workers 2`" in header
    assert "Run time: " in header
