"""The Arjevani–Field family (``family: relu``): the sweep schema, the cube against direct calls of
:mod:`pipeline.relu`, a cluster run, failures, and what ``sweeps/relu_spurious.yaml`` shows."""

from __future__ import annotations

import math
import shutil
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
import zarr
from conftest import build_cube
from test_runner import assert_same_cube, run
from threadpoolctl import threadpool_limits

import pipeline.families.relu as relu_family
from pipeline import store
from pipeline.cli import main
from pipeline.errors import StoreError, SweepError
from pipeline.families import FAMILIES
from pipeline.families.relu import ReluSpec, SearchResult, search
from pipeline.relu import (
    classify,
    find_critical_point,
    flip_start,
    global_minimum_spectrum,
    isotropy,
    random_start,
    standard_teacher,
)
from pipeline.relu.critical import GRADIENT_TOLERANCE
from pipeline.store import CellFailure, open_cube
from pipeline.sweep import load_sweep, parse_sweep, spec_from_dict

SWEEPS = Path(__file__).parents[1] / "sweeps"
# The sweep of the catalogue that this family's tests check (sweeps/<name>.yaml).
SPURIOUS = "relu_spurious"

TINY = """
family: relu
name: relu_tiny
trials: 2
seed: 5
grid: {k: [4, 6], extra: [0, 1], start: [random, flip1]}
perturbation: 1.0e-3
"""
# What TINY's cube must hold, from its text (not from the code under test).
TINY_K, TINY_EXTRA, TINY_START, TINY_TRIALS, TINY_SEED, TINY_PERTURBATION = (
    (4, 6),
    (0, 1),
    ("random", "flip1"),
    2,
    5,
    1e-3,
)
KINDS = {"global minimum", "spurious minimum", "saddle"}


def expected_start(i_k: int, i_extra: int, i_start: int, trial: int) -> tuple[np.ndarray, np.ndarray]:
    """TINY's start and teacher at a point, as the family's contract describes them."""
    k = TINY_K[i_k]
    d = k + TINY_EXTRA[i_extra]
    key = (TINY_SEED, i_k, i_extra, i_start, trial)
    if TINY_START[i_start] == "random":
        start = random_start(k, d, key)
    else:
        noise = np.random.default_rng(np.random.SeedSequence(key)).standard_normal((k, d))
        start = flip_start([k - 1, 1], d) + TINY_PERTURBATION * noise
    return start, standard_teacher(k, d)


@pytest.fixture(scope="module")
def tiny() -> ReluSpec:
    spec = parse_sweep(TINY)
    assert isinstance(spec, ReluSpec)
    return spec


@pytest.fixture(scope="module")
def tiny_cube(tiny: ReluSpec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TINY built in this process.  BLAS on one thread, as on the runner's workers: eigenvalues are
    bit-identical only for one thread count (and a loaded 2-core machine runs 10× faster so)."""
    with threadpool_limits(1):
        return build_cube(tiny, tmp_path_factory.mktemp("relu") / "tiny.zarr")


# ----------------------------------------------------------------------------------------------
# The sweep file
# ----------------------------------------------------------------------------------------------


def test_the_family_is_registered() -> None:
    assert isinstance(FAMILIES["relu"], relu_family.ReluFamily)


def test_a_spec_round_trips(tiny: ReluSpec) -> None:
    assert spec_from_dict(tiny.to_dict()) == tiny
    assert parse_sweep(yaml.safe_dump(tiny.to_dict())) == tiny
    assert tiny.grid.k == TINY_K and tiny.grid.extra == TINY_EXTRA and tiny.grid.start == TINY_START
    assert (tiny.trials, tiny.seed, tiny.perturbation) == (TINY_TRIALS, TINY_SEED, TINY_PERTURBATION)
    # Defaults: one trial, seed 0, extra [0], a random start, find_critical_point's own tolerance.
    minimal = parse_sweep("family: relu\nname: m\ngrid: {k: [3]}")
    assert spec_from_dict(minimal.to_dict()) == minimal
    assert minimal.shape == (1, 1, 1, 1) and minimal.grid.start == ("random",)
    assert minimal.search.gradient_tolerance == GRADIENT_TOLERANCE
    assert minimal.to_dict()["family"] == "relu"
    other = parse_sweep(TINY.replace("trials: 2", "trials: 3").replace("[random, flip1]", "[random, flip2]"))
    assert tiny.differences(other) == [
        "trials: 2 != 3",
        "grid.start: ['random', 'flip1'] != ['random', 'flip2']",
    ]
    assert tiny.differences(tiny) == []


BASE: dict[str, Any] = {
    "family": "relu",
    "name": "bad",
    "trials": 2,
    "grid": {"k": [4, 6], "extra": [0], "start": ["random", "flip1"]},
}


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
    ("p", 400, "p", "unknown key"),
    ("grid.c", [0.5], "grid.c", "unknown key"),
    ("grid.k", [4, 4], "grid.k[1]", "duplicate"),
    ("grid.k", [0, 4], "grid.k[0]", ">= 1"),
    ("grid.k", [4.5], "grid.k[0]", "integer"),
    ("grid.k", [], "grid.k", "empty"),
    ("grid.k", "4", "grid.k", "list"),
    ("grid.extra", [0, -1], "grid.extra[1]", ">= 0"),
    ("grid.start", ["random", "flop"], "grid.start[1]", "'random' or 'flipP'"),
    ("grid.start", ["flip0"], "grid.start[0]", "'random' or 'flipP'"),
    ("grid.start", ["flip4"], "grid.start[0]", "needs P < k, but grid.k[0] = 4"),
    ("grid.start", ["random", 1], "grid.start[1]", "start name"),
    ("grid.start", ["random", "random"], "grid.start[1]", "duplicate"),
    ("grid.k", [64, 65], "grid", "sanity limit of 4096"),
    ("trials", 10**6, "grid", "sanity limit"),
    ("trials", 0, "trials", ">= 1"),
    ("seed", -1, "seed", ">= 0"),
    ("name", "a b", "name", "letters"),
    ("name", "a" * 129, "name", "at most 128 characters"),
    ("perturbation", math.nan, "perturbation", "finite"),
    ("perturbation", -1.0, "perturbation", ">= 0"),
    ("perturbation", "1e-3", "perturbation", "with a dot"),
    ("search.gradient_tolerance", math.inf, "search.gradient_tolerance", "finite"),
    ("search.gradient_tolerance", 1e-6, "search.gradient_tolerance", "<= 1e-11"),
    ("search.gradient_tolerance", 0.0, "search.gradient_tolerance", "> 0"),
    ("search.max_iterations", -1, "search.max_iterations", ">= 0"),
    ("search.newton_steps", True, "search.newton_steps", "integer"),
    ("search.method", "Nelder-Mead", "search.method", "L-BFGS-B"),
    ("search.speed", 1, "search.speed", "unknown key"),
]


@pytest.mark.parametrize(("where", "value", "path", "reason"), BAD, ids=[f"{c[0]}={c[1]!r}" for c in BAD])
def test_a_bad_field_is_refused_with_its_path(where: str, value: Any, path: str, reason: str) -> None:
    text = yaml.safe_dump(_with(where, value))
    with pytest.raises(SweepError) as caught:
        parse_sweep(text)
    assert caught.value.path == path
    assert reason in caught.value.reason


def test_validate_prints_the_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(TINY)
    assert main(["validate", str(sweep)]) == 0
    lines = capsys.readouterr().out.splitlines()
    points = len(TINY_K) * len(TINY_EXTRA) * len(TINY_START) * TINY_TRIALS
    assert lines[0] == "sweep relu_tiny: valid"
    assert lines[1].startswith("grid: 2 k × 2 extra × 2 start × 2 trials")
    assert f"k·d {4 * 4}..{6 * 7}" in lines[1]
    assert any(line.startswith(f"points: {points} searches") for line in lines)
    assert any(line.startswith("tasks: 8 cells") for line in lines)
    assert any(line.startswith("work: about") for line in lines)
    sweep.write_text(TINY.replace("[random, flip1]", "[random, flip9]"))
    assert main(["validate", str(sweep)]) == 2
    assert "grid.start[1]: flip9 flips 9 neurons" in capsys.readouterr().err


def test_parts_batch_cheap_trials_and_split_costly_ones() -> None:
    family = FAMILIES["relu"]
    spec = parse_sweep("family: relu\nname: p\ntrials: 3\ngrid: {k: [3, 40], start: [random]}")
    for cell in family.layout(spec).cells():
        parts = family.parts(spec, cell)
        covered = [trial for _, first, last in parts for trial in range(int(first), int(last))]
        assert covered == list(range(spec.trials))
        # A search at k = d = 3 takes milliseconds: one part; at 40 (1600 weights), seconds: one each.
        assert len(parts) == (1 if spec.grid.k[cell[0]] == 3 else spec.trials)
    assert family.cell_seconds(spec, (1, 0, 0)) > family.cell_seconds(spec, (0, 0, 0))


# ----------------------------------------------------------------------------------------------
# The cube
# ----------------------------------------------------------------------------------------------


def test_the_cube_holds_what_the_searches_give(tiny_cube: Path) -> None:
    cube = open_cube(tiny_cube)
    assert bool(cube["done"].all())
    kinds = set()
    for i_k, i_extra, i_start, trial in product(range(2), range(2), range(2), range(TINY_TRIALS)):
        start, teacher = expected_start(i_k, i_extra, i_start, trial)
        k, d = start.shape
        with threadpool_limits(1):
            point = find_critical_point(start, teacher)
            kind = classify(point.W, teacher)
            name = isotropy(point.W).name
        at = cube.isel(k=i_k, extra=i_extra, start=i_start, trial=trial)
        where = (i_k, i_extra, i_start, trial)
        assert point.converged, where
        for variable, value in (
            ("loss", point.loss),
            ("gradient_norm", point.gradient_norm),
            ("converged", point.converged),
            ("iterations", point.iterations),
            ("kind", kind.kind),
            ("hessian_index", kind.index),
            ("nullity", kind.nullity),
            ("isotropy", name),
        ):
            assert at[variable].values[()] == value, (where, variable)
        eigenvalues = at["eigenvalues"].values
        assert np.array_equal(eigenvalues[: k * d], kind.eigenvalues), where
        assert np.isnan(eigenvalues[k * d :]).all(), where
        weights = at["weights"].values
        assert np.array_equal(weights[:k, :d], point.W), where
        padding = np.ones(weights.shape, dtype=bool)
        padding[:k, :d] = False
        assert np.isnan(weights[padding]).all(), where
        kinds.add(kind.kind)
    # TINY reaches both the global minimum and the type-A spurious minimum (flip1 at k = 6).
    assert kinds == {"global minimum", "spurious minimum"}


def test_the_cube_layout(tiny_cube: Path) -> None:
    cube = open_cube(tiny_cube)
    assert dict(cube.sizes) == {"k": 2, "extra": 2, "start": 2, "trial": 2, "eig": 6 * 7, "row": 6, "col": 7}
    assert cube["k"].values.tolist() == list(TINY_K)
    assert cube["extra"].values.tolist() == list(TINY_EXTRA)
    assert cube["start"].values.tolist() == list(TINY_START)
    assert cube["d"].dims == ("k", "extra")
    assert cube["d"].values.tolist() == [[k + e for e in TINY_EXTRA] for k in TINY_K]
    for name in ("loss", "kind", "converged", "isotropy"):
        assert cube[name].dims == ("k", "extra", "start", "trial")
    assert cube["eigenvalues"].dims == ("k", "extra", "start", "trial", "eig")
    assert cube["weights"].dims == ("k", "extra", "start", "trial", "row", "col")
    assert set(cube["kind"].values.ravel().tolist()) <= KINDS
    assert cube.attrs["family"] == "relu"
    # The selection by labels that later tools use.
    assert cube.sel(k=6, extra=0, start="flip1")["kind"].values.tolist() == ["spurious minimum"] * 2


def test_verify_and_summary(tiny_cube: Path) -> None:
    assert store.verify(tiny_cube) == (16, [])
    summary = store.summary(tiny_cube)
    assert summary["shape"] == {"k": 2, "extra": 2, "start": 2, "trial": 2}
    assert (summary["total"], summary["done"], summary["failed"], summary["pending"]) == (16, 16, 0, 0)
    assert summary["cells"] == {"total": 8, "done": 8, "failed": 0, "pending": 0}
    assert set(summary["axes"]) == {"k", "extra", "start"}
    assert [entry["value"] for entry in summary["axes"]["start"]] == list(TINY_START)
    for entries in summary["axes"].values():
        assert [(e["total"], e["done"]) for e in entries] == [(8, 8), (8, 8)]


# Corruptions of one done point (k = 6, extra = 0, flip1, trial 0: a spurious minimum) and the
# problem verify must report for each.
CORRUPTIONS = [
    ("kind", "saddle", "kind disagrees with hessian_index and loss"),
    ("hessian_index", 3, "hessian_index or nullity disagrees with the eigenvalues"),
    ("gradient_norm", 1e-6, "gradient norm missing or above 1e-12"),
    ("converged", False, "done, but not converged"),
    ("loss", math.nan, "loss missing or not finite"),
    ("isotropy", "", "isotropy missing"),
]


@pytest.mark.parametrize(("name", "value", "problem"), CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_verify_finds_a_corrupted_point(
    tiny_cube: Path, tmp_path: Path, name: str, value: Any, problem: str
) -> None:
    path = shutil.copytree(tiny_cube, tmp_path / "copy.zarr")
    group = zarr.open_group(path, mode="r+")
    array = group[name]
    assert isinstance(array, zarr.Array)
    array[1, 0, 1, 0] = value
    checked, problems = store.verify(path)
    assert checked == 16
    assert problems == [f"k[1] = 6, extra[0] = 0, start = flip1, trial 0: {problem}"]


def test_verify_finds_bad_eigenvalues_and_padding(tiny_cube: Path, tmp_path: Path) -> None:
    path = shutil.copytree(tiny_cube, tmp_path / "copy.zarr")
    group = zarr.open_group(path, mode="r+")
    eigenvalues, weights = group["eigenvalues"], group["weights"]
    assert isinstance(eigenvalues, zarr.Array) and isinstance(weights, zarr.Array)
    point = (1, 0, 1, 0)  # k = 6, d = 6: 36 eigenvalues, then NaN
    values = eigenvalues[point]
    eigenvalues[point] = np.concatenate([values[:36][::-1], [0.0], values[37:]])
    weights[(0, 0, 0, 1, 5, 0)] = 0.0  # k = 4: row 5 is padding
    _, problems = store.verify(path)
    assert problems == [
        "k[1] = 6, extra[0] = 0, start = flip1, trial 0: eigenvalues missing, not finite or not ascending in "
        "their first k·d entries",
        "k[1] = 6, extra[0] = 0, start = flip1, trial 0: eigenvalues not NaN after the first k·d",
        "k[0] = 4, extra[0] = 0, start = random, trial 1: weights not finite in their k × d block, or not "
        "NaN outside it",
    ]


def test_a_store_of_another_sweep_is_refused(tiny_cube: Path) -> None:
    store.check_store(tiny_cube, parse_sweep(TINY))
    other = parse_sweep(TINY.replace("perturbation: 1.0e-3", "perturbation: 0"))
    with pytest.raises(
        StoreError, match=r"made by a different sweep \(store != sweep\): perturbation: 0.001 != 0.0$"
    ):
        store.check_store(tiny_cube, other)


@pytest.mark.distributed
def test_two_workers_give_the_same_cube(tiny: ReluSpec, tiny_cube: Path, tmp_path: Path) -> None:
    path = tmp_path / "tiny.zarr"
    report = run(tiny, path, workers=2)
    assert report.ok and (report.computed_cells, report.failed_points) == (8, 0)
    assert_same_cube(path, tiny_cube)


# ----------------------------------------------------------------------------------------------
# Failures
# ----------------------------------------------------------------------------------------------


@pytest.mark.distributed
def test_a_search_that_raises_fails_only_its_point(
    tiny: ReluSpec, tiny_cube: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import LocalCluster

    real = relu_family.search

    def failing(spec: ReluSpec, cell: tuple[int, ...], trial: int) -> SearchResult:
        if cell == (1, 0, 1) and trial == 1:
            raise FloatingPointError("the descent diverged")
        return real(spec, cell, trial)

    path = tmp_path / "tiny.zarr"
    # Threads in this process, so that the workers see the patched search; BLAS on one thread, as
    # for the reference cube.
    with (
        threadpool_limits(1),
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster,
    ):
        monkeypatch.setattr(relu_family, "search", failing)
        report = run(tiny, path, scheduler=cluster.scheduler_address, attempts=2)
        assert (report.computed_cells, report.failed_points) == (8, 1)
        assert report.failures == (
            "search at k[1] = 6, extra[0] = 0, start flip1, trial 1: FloatingPointError: the descent "
            "diverged (2 attempts)",
        )
        cube = open_cube(path)
        failed = np.zeros((2, 2, 2, 2), dtype=bool)
        failed[1, 0, 1, 1] = True
        assert np.array_equal(~cube["done"].values, failed)
        assert cube["status"].values[1, 0, 1, 1] == store.STATUS_FAILED
        assert str(cube["error"].values[1, 0, 1, 1]).startswith("search: search at k[1] = 6")
        assert np.isnan(cube["eigenvalues"].values[1, 0, 1, 1]).all()
        # Its neighbour in the same cell is the reference's, bit for bit.
        reference = open_cube(tiny_cube)
        neighbour = cube["eigenvalues"].values[1, 0, 1, 0]
        assert np.array_equal(neighbour, reference["eigenvalues"].values[1, 0, 1, 0], equal_nan=True)
        assert store.verify(path) == (15, [])
        assert store.pending_cells(path, failed=True) == [(1, 0, 1)]

        monkeypatch.setattr(relu_family, "search", real)
        again = run(tiny, path, scheduler=cluster.scheduler_address, retry_failed=True)
        assert again.ok and (again.computed_cells, again.skipped_cells) == (1, 7)
    assert_same_cube(path, tiny_cube)


def test_a_search_that_does_not_converge_is_recorded_not_done(tmp_path: Path) -> None:
    # Two descent iterations and no Newton step cannot reach a gradient norm of 1e-12.
    spec = parse_sweep(
        "family: relu\nname: short\ntrials: 2\ngrid: {k: [3], start: [random]}\n"
        "search: {max_iterations: 2, newton_steps: 0}"
    )
    with threadpool_limits(1):
        build_cube(spec, tmp_path / "short.zarr")
    cube = open_cube(tmp_path / "short.zarr")
    assert not cube["done"].values.any()
    assert (cube["status"].values == store.STATUS_FAILED).all()
    assert not cube["converged"].values.any()
    assert (cube["gradient_norm"].values > 1e-12).all()
    # What the search returned is kept for inspection.
    assert np.isfinite(cube["loss"].values).all() and np.isfinite(cube["eigenvalues"].values).all()
    for message in cube["error"].values.ravel():
        assert str(message).startswith("search: did not converge (gradient norm ")
    assert store.verify(tmp_path / "short.zarr") == (0, [])


def test_assemble_refuses_wrong_results(tiny: ReluSpec) -> None:
    family = FAMILIES["relu"]
    cell = (0, 0, 0)
    parts = family.parts(tiny, cell)
    with pytest.raises(ValueError, match="one per part"):
        family.assemble(tiny, cell, [])
    with pytest.raises(ValueError, match="trials' results"):
        family.assemble(tiny, cell, [[CellFailure("x")]] * len(parts))
    with pytest.raises(TypeError, match="SearchResult"):
        family.assemble(tiny, cell, [["not a result"] * tiny.trials] * len(parts))
    wrong = search(tiny, (1, 0, 0), 0)  # a 6 × 6 point in a k = 4 cell
    with pytest.raises(ValueError, match="4 × 4 point"):
        family.assemble(tiny, cell, [[wrong] * tiny.trials] * len(parts))


# ----------------------------------------------------------------------------------------------
# sweeps/relu_spurious.yaml
# ----------------------------------------------------------------------------------------------


def test_relu_spurious_header() -> None:
    path = SWEEPS / f"{SPURIOUS}.yaml"
    spec = load_sweep(path)
    assert isinstance(spec, ReluSpec) and spec.name == path.stem
    header = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    text = "\n".join(header)
    assert len(header) >= 5 and "Look at:" in text
    assert f"`hessweep run sweeps/{path.name} --workers 2`" in text
    assert "Run time: " in text and "RUNTIME" not in text


# Random starts ending at a spurious minimum, of the sweep's 10 trials: Safran & Shamir (2018) find
# them rare at k = 6 and the rule at k = 20.  The bounds leave a binomial margin: at a rate of 0.1
# (k = 6), P(more than 3 of 10) = 0.013; at a rate of 0.8 (k = 20), P(fewer than 6 of 10) = 0.033.
RARE_AT_6 = 3
COMMON_AT_20 = 6


@pytest.mark.slow
def test_relu_spurious_shows_the_spurious_minima() -> None:
    spec = load_sweep(SWEEPS / f"{SPURIOUS}.yaml")
    assert isinstance(spec, ReluSpec)
    ks, starts = spec.grid.k, spec.grid.start
    assert spec.grid.extra == (0,) and {4, 5, 6, 20} <= set(ks)
    assert spec.trials == 10 and spec.perturbation > 0
    flip1, random = starts.index("flip1"), starts.index("random")
    with threadpool_limits(1):
        # Flip one neuron: the S_{k-1} x S_1 point is a saddle for k <= 5 (the perturbed start escapes
        # it to the global minimum) and a spurious minimum, found again, for every k >= 6.
        distance = {}
        for i_k, k in enumerate(ks):
            for trial in (0, spec.trials - 1):
                result = search(spec, (i_k, 0, flip1), trial)
                assert result.point.converged
                if k >= 6:
                    assert result.classification.kind == "spurious minimum", (k, trial)
                    assert result.isotropy == "S_{k-1} x S_1", (k, trial)
                    assert result.classification.index == 0 and result.point.loss > 0
                    # Claim (c): its spectrum comes closer to the global minimum's as k grows.
                    gap = result.classification.eigenvalues - global_minimum_spectrum(k)
                    distance[k] = float(np.median(np.abs(gap)))
                else:
                    assert result.classification.kind == "global minimum", (k, trial)
        assert distance[20] < distance[12] < distance[6]

        def spurious(k: int) -> int:
            results = [search(spec, (ks.index(k), 0, random), trial) for trial in range(spec.trials)]
            assert all(r.point.converged for r in results)
            return sum(r.classification.kind == "spurious minimum" for r in results)

        at_6, at_12, at_20 = spurious(6), spurious(12), spurious(20)
    assert at_6 <= RARE_AT_6 and at_20 >= COMMON_AT_20
    assert at_6 < at_12 < at_20
