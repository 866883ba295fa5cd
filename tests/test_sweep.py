"""Sweep definitions: parsing, validation, grid expansion and seeds (``pipeline.sweep``)."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from pipeline.errors import SweepError
from pipeline.scenario import Scenario
from pipeline.sweep import MAX_CELLS, MAX_P, SweepSpec, load_sweep, parse_sweep

QUICKSTART = Path(__file__).parents[1] / "sweeps" / "quickstart.yaml"

# A small valid sweep; the error tests change one thing in it.
BASE: dict[str, Any] = {
    "name": "small",
    "p": 40,
    "trials": 2,
    "seed": 3,
    "model": "logistic",
    "grid": {"c": [0.5, 1.0], "loss": ["logistic", "exponential"], "signal": [0.0, 1.0, 2.0]},
    "signal": "mu.norm",
    "fixed": {"mu": {"angle": 90}, "w": "w_star"},
}


def sweep(**changes: Any) -> dict[str, Any]:
    """BASE with top-level keys changed (a value of None removes the key)."""
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    return data


def grid(**axes: Any) -> dict[str, Any]:
    return {**BASE["grid"], **axes}


NOT_PLAIN = " is not allowed: a sweep holds plain data only"


def refused(text: str) -> SweepError:
    with pytest.raises(SweepError) as info:
        parse_sweep(text)
    return info.value


def assert_refused(data: dict[str, Any] | str, path: str, reason: str) -> None:
    text = data if isinstance(data, str) else yaml.safe_dump(data)
    error = refused(text)
    assert (error.path, error.reason) == (path, reason)
    assert str(error) == f"{path}: {reason}"


# ----------------------------------------------------------------------------------------------
# The quick start
# ----------------------------------------------------------------------------------------------


def test_quickstart_parses() -> None:
    spec = load_sweep(QUICKSTART)
    assert spec.name == "quickstart"
    assert (spec.p, spec.trials, spec.seed, spec.model) == (400, 4, 0, "logistic")
    assert spec.shape == (3, 2, 7, 4)
    assert spec.grid.c == (0.25, 0.5, 1.0)
    assert spec.grid.loss == ("logistic", "exponential")
    assert spec.grid.signal == (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
    assert spec.signal_target == "mu.norm"
    assert (spec.montecarlo.k, spec.theory.points) == (2, 400)
    assert spec.source_text == QUICKSTART.read_text(encoding="utf-8")


def test_quickstart_scenarios() -> None:
    spec = load_sweep(QUICKSTART)
    scenario = spec.scenario(0, 1, 6)
    expected = Scenario(
        0.25,
        model="logistic",
        loss="exponential",
        mu={"norm": 3.0, "angle": 90},
        w_star={"norm": 1.0},
        w="w_star",
        cov={"eigenvalues": [1], "weights": [1]},
    )
    assert scenario == expected
    assert spec.scenario(2, 0, 0).mu == {"norm": 0.0, "spread": False, "angle": 90.0}
    assert spec.scenario(2, 0, 0).c == 1.0


def test_every_point_builds_a_scenario() -> None:
    spec = load_sweep(QUICKSTART)
    points = list(spec.points())
    assert len(points) == 3 * 2 * 7
    assert points[:3] == [(0, 0, 0), (0, 0, 1), (0, 0, 2)]
    for point in points:
        scenario = spec.scenario(*point)
        assert scenario.mu["norm"] == spec.grid.signal[point[2]]


def test_work_estimate() -> None:
    spec = load_sweep(QUICKSTART)
    p = 400
    per_draw_and_loss = sum(round(p / c) * p**2 + 4 / 3 * p**3 for c in (0.25, 0.5, 1.0))
    assert spec.work_estimate() == {
        "points": 42,
        "theory_solves": 42,
        "monte_carlo_draws": 3 * 7 * 4,
        "losses_per_draw": 2,
        "monte_carlo_flops": round(per_draw_and_loss * 7 * 4 * 2),
        "monte_carlo_bytes": 8 * (1600 * p + p**2),  # X and H at c = 0.25
    }
    lanczos = parse_sweep(
        "name: big\np: 20000\ngrid: {c: [0.5, 2.0], loss: [square], signal: [1.0]}\n"
        "montecarlo: {method: lanczos, probes: 8, steps: 80, dtype: float32, memory_gb: 4}"
    )
    d = 8 * 80
    work = lanczos.work_estimate()
    assert work["monte_carlo_flops"] == round(
        sum(4 * n * 20000 * d + 4 * 20000 * d**2 for n in (40000, 10000))
    )
    # X at c = 0.5 (3.2 GB) is held within the 4 GB budget; plus the Krylov basis.
    assert work["monte_carlo_bytes"] == 40000 * 20000 * 4 + 8 * 20000 * d


# ----------------------------------------------------------------------------------------------
# Axes
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("axis", "expected"),
    [
        ([0.5, 2, 1.25], [0.5, 2.0, 1.25]),
        ({"start": 0.1, "stop": 2.0, "num": 5}, np.linspace(0.1, 2.0, 5)),
        ({"start": 0.1, "stop": 2.0, "num": 5, "scale": "linear"}, np.linspace(0.1, 2.0, 5)),
        ({"start": 0.01, "stop": 10, "num": 7, "scale": "log"}, np.geomspace(0.01, 10, 7)),
        ({"start": 3.0, "stop": 1.0, "num": 3, "scale": "log"}, np.geomspace(3.0, 1.0, 3)),
        ({"start": 0.7, "stop": 5.0, "num": 1}, [0.7]),
    ],
)
def test_axis_forms(axis: Any, expected: Any) -> None:
    spec = parse_sweep(yaml.safe_dump(sweep(grid=grid(c=axis, signal=axis))))
    for values in (spec.grid.c, spec.grid.signal):
        assert values == tuple(float(v) for v in expected)
        assert all(type(v) is float for v in values)


def test_geomspace_keeps_its_ends_exact() -> None:
    spec = parse_sweep(
        yaml.safe_dump(sweep(grid=grid(c={"start": 0.3, "stop": 3.3, "num": 9, "scale": "log"})))
    )
    assert (spec.grid.c[0], spec.grid.c[-1]) == (0.3, 3.3)


# ----------------------------------------------------------------------------------------------
# Refusals: each names the YAML path and the reason
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "path", "reason"),
    [
        # unknown keys, at every level
        (
            sweep(steps=3),
            "steps",
            "unknown key (known: family, fixed, grid, model, montecarlo, name, p, seed, signal, theory, "
            "trials)",
        ),
        (sweep(grid=grid(trial=[1])), "grid.trial", "unknown key (known: c, loss, signal)"),
        (
            sweep(grid=grid(c={"start": 1, "stop": 2, "nums": 3})),
            "grid.c.nums",
            "unknown key (known: num, scale, start, stop)",
        ),
        (sweep(fixed={"sigma": 1}), "fixed.sigma", "unknown key (known: cov, labels, mu, w, w_star)"),
        (
            sweep(fixed={"mu": {"angle": 90, "nrm": 1}}),
            "fixed.mu.nrm",
            "unknown key (known: angle, norm, spread)",
        ),
        (
            sweep(montecarlo={"k": 2, "eig": 3}),
            "montecarlo.eig",
            "unknown key (known: dtype, k, memory_gb, method, probes, steps)",
        ),
        (sweep(theory={"grid": 3}), "theory.grid", "unknown key (known: points)"),
        # missing keys
        (sweep(grid=None), "grid", "is required"),
        (sweep(grid={"c": [1.0], "loss": ["square"]}), "grid.signal", "is required"),
        (sweep(grid=grid(c={"start": 1, "stop": 2})), "grid.c.num", "is required"),
        # wrong types
        (sweep(p="400"), "p", "must be an integer, not str"),
        (sweep(p=400.0), "p", "must be an integer, not float"),
        (sweep(p=True), "p", "must be an integer, not bool"),
        (sweep(trials=[4]), "trials", "must be an integer, not list"),
        (sweep(name=3), "name", "must be a string, not int"),
        (sweep(grid=[1, 2]), "grid", "must be a mapping, not list"),
        (sweep(fixed=[1]), "fixed", "must be a mapping, not list"),
        (sweep(montecarlo=2), "montecarlo", "must be a mapping, not int"),
        (sweep(model=3), "model", "must be a name or a mapping with a name, not int"),
        (sweep(grid=grid(c=0.5)), "grid.c", "must be a list or {start, stop, num, scale}, not float"),
        (sweep(grid=grid(loss="logistic")), "grid.loss", "must be a list of loss names, not str"),
        (sweep(grid=grid(loss=["logistic", 2])), "grid.loss[1]", "must be a loss name, not int"),
        (sweep(grid=grid(c=[0.5, "one"])), "grid.c[1]", "must be a number, not str"),
        (sweep(grid=grid(signal=[0.0, True])), "grid.signal[1]", "must be a number, not bool"),
        (
            sweep(grid=grid(c={"start": 0.1, "stop": 1, "num": 2.0})),
            "grid.c.num",
            "must be an integer, not float",
        ),
        (
            sweep(signal=[0, 1]),
            "signal",
            "must be one of mu.norm, w_star.norm, w.norm, mu.angle, w.angle, cov.eigenvalues[J], "
            "not [0, 1] (the signal values go under grid.signal)",
        ),
        (
            sweep(signal="mu.size"),
            "signal",
            "must be one of mu.norm, w_star.norm, w.norm, mu.angle, w.angle, cov.eigenvalues[J], "
            "not 'mu.size'",
        ),
        # empty axes and impossible values
        (sweep(grid=grid(c=[])), "grid.c", "must not be empty"),
        (sweep(grid=grid(loss=[])), "grid.loss", "must not be empty"),
        (sweep(grid=grid(signal=[])), "grid.signal", "must not be empty"),
        (sweep(grid=grid(c=[0.5, 0.0])), "grid.c[1]", "must be > 0"),
        (sweep(grid=grid(c=[0.5, 1.0, -2])), "grid.c[2]", "must be > 0"),
        (sweep(grid=grid(c={"start": -1, "stop": 1, "num": 3})), "grid.c[0]", "must be > 0"),
        (
            sweep(grid=grid(c={"start": 0, "stop": 1, "num": 3, "scale": "log"})),
            "grid.c.start",
            "must be > 0 for scale: log",
        ),
        (
            sweep(grid=grid(c={"start": 1, "stop": 2, "num": 3, "scale": "cubic"})),
            "grid.c.scale",
            "must be 'linear' or 'log', not 'cubic'",
        ),
        (sweep(grid=grid(c={"start": 1, "stop": 2, "num": 0})), "grid.c.num", "must be >= 1"),
        (sweep(grid=grid(c=[0.5, 1.0, 0.5])), "grid.c[2]", "duplicate of grid.c[0] (0.5)"),
        (
            sweep(grid=grid(loss=["logistic", "logistic"])),
            "grid.loss[1]",
            "duplicate of grid.loss[0] ('logistic')",
        ),
        (sweep(p=1), "p", "must be >= 2"),
        (sweep(trials=0), "trials", "must be >= 1"),
        (sweep(seed=-1), "seed", "must be >= 0"),
        (sweep(name=""), "name", "must not be empty"),
        (
            sweep(name="../x"),
            "name",
            "must hold only letters, digits, '-' and '_' (it names the store), not '../x'",
        ),
        (sweep(montecarlo={"k": -1}), "montecarlo.k", "must be >= 0"),
        (sweep(montecarlo={"k": 41}), "montecarlo.k", "must be <= p = 40"),
        (sweep(theory={"points": 31}), "theory.points", "must be >= 32"),
        (
            sweep(p=4, grid=grid(c=[0.5, 10.0])),
            "grid.c[1]",
            "p = 4 at c = 10 gives n = round(p/c) = 0 samples",
        ),
        # the physics of the scenarios
        (sweep(model="probit"), "model", "unknown model 'probit' (known: linear, logistic, phase)"),
        (
            sweep(model={"name": "linear", "noise": -1}, grid=grid(loss=["square"])),
            "model.noise",
            "must be >= 0",
        ),
        (
            sweep(grid=grid(loss=["hinge"])),
            "grid.loss[0]",
            "unknown loss 'hinge' (known: exponential, logistic, phase, spectral, square)",
        ),
        (
            sweep(model="linear"),
            "grid.loss[0]",
            "the logistic loss needs labels in {-1, +1}, but the linear model gives real-valued labels",
        ),
        (
            sweep(model="phase", grid=grid(loss=["square", "phase", "exponential"])),
            "grid.loss[2]",
            "the exponential loss needs labels in {-1, +1}, but the phase model gives real-valued labels",
        ),
        (
            sweep(fixed={"cov": {"eigenvalues": [1, 2], "weights": [0.5, 0.4]}}),
            "fixed.cov.weights",
            "must sum to 1 (they sum to 0.9)",
        ),
        (
            sweep(fixed={"cov": {"eigenvalues": [1, 2], "weights": [0.99, 0.01]}}),
            "fixed.cov.weights",
            "p = 40 gives a covariance block fewer than 2 coordinates",
        ),
        (sweep(fixed={"cov": {"eigenvalues": [1, -2]}}), "fixed.cov.eigenvalues[1]", "must be > 0"),
        (sweep(fixed={"w": "w_start"}), "fixed.w", "must be 'w_star', 'zero' or a mapping, not 'w_start'"),
        (
            sweep(model="phase", grid=grid(c=[0.5, 3.0], loss=["phase"]), fixed={"labels": "optimal"}),
            "fixed.labels",
            "the optimal transform needs c < 2 (n/p above 1/2) (at grid.c[1] = 3.0)",
        ),
        # the signal axis and its target
        (sweep(grid=grid(signal=[0.0, -1.0, 2.0])), "grid.signal[1]", "must be >= 0 (it sets mu.norm)"),
        (
            sweep(fixed={"mu": {"norm": 1.0, "angle": 90}}),
            "fixed.mu.norm",
            "is set by the signal axis (signal: mu.norm); remove it",
        ),
        (sweep(signal="w.norm"), "signal", "w.norm needs fixed.w as a mapping {norm, angle}, not 'w_star'"),
        (
            sweep(signal="w.angle", fixed={"w": "zero"}),
            "signal",
            "w.angle needs fixed.w as a mapping {norm, angle}, not 'zero'",
        ),
        (
            sweep(signal="mu.angle", fixed={}),
            "signal",
            "mu.angle rotates a vector of norm 0, so every point would be the same: set fixed.mu.norm > 0",
        ),
        # a covariance eigenvalue as the signal
        (
            sweep(signal="cov.eigenvalues[1]", grid=grid(signal=[1.0, 2.0])),
            "signal",
            "cov.eigenvalues[1] needs fixed.cov.eigenvalues, a list with null at [1] (the signal's place)",
        ),
        (
            sweep(signal="cov.eigenvalues[2]", fixed={"cov": {"eigenvalues": [1, None]}}),
            "signal",
            "cov.eigenvalues[2] is out of range: fixed.cov.eigenvalues has 2 entries, [0] to [1]",
        ),
        (
            sweep(signal="cov.eigenvalues[1]", fixed={"cov": {"eigenvalues": [1, 4]}}),
            "fixed.cov.eigenvalues[1]",
            "is set by the signal axis (signal: cov.eigenvalues[1]); write null in its place",
        ),
        (
            sweep(signal="cov.eigenvalues[0]", fixed={"cov": {"eigenvalues": [None, 2]}}),
            "grid.signal[0]",
            "must be > 0 (it sets cov.eigenvalues[0])",
        ),
        (
            sweep(
                signal="cov.eigenvalues[1]",
                grid=grid(signal=[1.0, 2.0]),
                fixed={"cov": {"eigenvalues": [None, None]}},
            ),
            "fixed.cov.eigenvalues[0]",
            "must be a number, not NoneType",
        ),
        (
            sweep(signal="cov.eigenvalues[01]"),
            "signal",
            "must be one of mu.norm, w_star.norm, w.norm, mu.angle, w.angle, cov.eigenvalues[J], "
            "not 'cov.eigenvalues[01]'",
        ),
        # sanity limits
        (
            sweep(p=MAX_P + 1),
            "p",
            f"must be <= {MAX_P} (a sanity limit: one dense p × p matrix is 8p² bytes)",
        ),
        (
            sweep(grid=grid(c={"start": 0.1, "stop": 1, "num": 10**12})),
            "grid.c.num",
            f"must be <= {MAX_CELLS} (a sanity limit)",
        ),
        (
            sweep(trials=200_000),
            "grid",
            "2 c × 2 loss × 3 signal × 200000 trials = 2400000 cells, "
            f"more than the sanity limit of {MAX_CELLS}",
        ),
    ],
)
def test_bad_sweeps_are_refused(data: dict[str, Any], path: str, reason: str) -> None:
    assert_refused(data, path, reason)


def base_text(**replace: str) -> str:
    """BASE as YAML, with some top-level keys given as raw YAML text after the rest."""
    rest = yaml.safe_dump({key: value for key, value in BASE.items() if key not in replace}, sort_keys=False)
    return rest + "".join(f"{text}\n" for text in replace.values())


@pytest.mark.parametrize(
    ("text", "path", "reason"),
    [
        (base_text(p="p: .nan"), "p", "must be an integer, not float"),
        (
            "name: x\np: 40\ngrid: {c: [0.5, .nan], loss: [square], signal: [0.0]}",
            "grid.c[1]",
            "must be finite",
        ),
        ("name: x\np: 40\ngrid: {c: [.inf], loss: [square], signal: [0.0]}", "grid.c[0]", "must be finite"),
        (
            "name: x\np: 40\ngrid: {c: [0.5], loss: [square], signal: [0, -.inf]}",
            "grid.signal[1]",
            "must be finite",
        ),
        (
            "name: x\np: 40\ngrid: {c: {start: 0.1, stop: .inf, num: 3}, loss: [square], signal: [0.0]}",
            "grid.c.stop",
            "must be finite",
        ),
        (
            "name: x\np: 40\ngrid: {c: [1e-1], loss: [square], signal: [0.0]}",
            "grid.c[0]",
            "must be a number, not str ('1e-1': write exponents with a dot, e.g. 1.0e-3)",
        ),
        # not a mapping, not YAML
        ("", "<root>", "must be a mapping of sweep keys, not an empty document"),
        ("- 1\n- 2\n", "<root>", "must be a mapping, not list"),
        ("just text", "<root>", "must be a mapping, not str"),
        (
            "name: x\n  p: [1, 2\n",
            "<root>",
            "invalid YAML at line 2, column 4: mapping values are not allowed here",
        ),
        (
            "name: [x\n",
            "<root>",
            "invalid YAML at line 2, column 1: "
            "while parsing a flow sequence; expected ',' or ']', but got '<stream end>'",
        ),
        (
            "name: x\n---\nname: y\n",
            "<root>",
            "invalid YAML at line 2, column 1: "
            "expected a single document in the stream; but found another document",
        ),
        (
            "name: \x07\n",
            "<root>",
            "invalid YAML: character #x0007 at offset 6: special characters are not allowed",
        ),
        # YAML that is valid but not plain data
        (base_text(p="p: 40\np: 80"), "p", "duplicate key (lines 21 and 22)"),
        ("name: x\np: 40\ngrid: {c: [0.5], c: [1.0]}\n", "grid.c", "duplicate key (lines 3 and 3)"),
        ("name: &a [*a]\n", "name[0]", "recursive YAML alias"),
        (
            base_text(fixed="fixed: {cov: !!python/object:collections.OrderedDict {}}"),
            "fixed.cov",
            "YAML tag 'tag:yaml.org,2002:python/object:collections.OrderedDict'" + NOT_PLAIN,
        ),
        (
            base_text(seed="seed: !!python/object/apply:os.getpid []"),
            "seed",
            "YAML tag 'tag:yaml.org,2002:python/object/apply:os.getpid'" + NOT_PLAIN,
        ),
        (
            "!!python/object/new:dict {}\n",
            "<root>",
            "YAML tag 'tag:yaml.org,2002:python/object/new:dict'" + NOT_PLAIN,
        ),
        (
            base_text(name="name: !custom x"),
            "name",
            "YAML tag '!custom'" + NOT_PLAIN,
        ),
    ],
)
def test_bad_yaml_is_refused(text: str, path: str, reason: str) -> None:
    assert_refused(text, path, reason)


def test_object_tags_construct_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "constructed"
    text = base_text(
        seed=f"seed: !!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path "
        f"['{marker}']]"
    )
    assert refused(text).path == "seed"
    assert not marker.exists()


def test_yaml_aliases_and_merge_keys_are_plain_data() -> None:
    text = """
name: aliases
p: 40
grid:
  c: &values [0.5, 1.0]
  loss: [square]
  signal: *values
base: &base {angle: 90}
"""
    assert refused(text).path == "base"
    spec = parse_sweep(
        text.replace("base: &base {angle: 90}", "fixed: {mu: {<<: {angle: 90}, spread: true}}")
    )
    assert spec.grid.signal == spec.grid.c == (0.5, 1.0)
    assert spec.scenario(0, 0, 1).mu == {"norm": 1.0, "spread": True, "angle": 90.0}


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(yaml.safe_dump(BASE).encode() + "# café\n".encode("latin-1"))
    with pytest.raises(SweepError) as info:
        load_sweep(path)
    assert info.value.path == "<root>"
    assert info.value.reason.startswith("not UTF-8 text: byte 0xe9 at offset ")
    assert info.value.source == str(path)


def test_file_errors_carry_their_source(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(sweep(p=1)), encoding="utf-8")
    with pytest.raises(SweepError, match=r"^p: must be >= 2$") as info:
        load_sweep(path)
    assert info.value.source == str(path)
    assert refused("name: x\np: 1\n").source == "<string>"


def test_utf8_with_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + yaml.safe_dump(BASE, allow_unicode=True).encode())
    assert load_sweep(path).name == "small"


def test_sweep_error_is_a_value_error() -> None:
    assert isinstance(refused("name: x\np: 1\n"), ValueError)


# ----------------------------------------------------------------------------------------------
# Signal targets
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "fixed", "read"),
    [
        ("mu.norm", {}, lambda s: s.mu["norm"]),
        ("w_star.norm", {}, lambda s: s.w_star["norm"]),
        ("w.norm", {"w": {"angle": 30}}, lambda s: s.w["norm"]),
        ("w.norm", {}, lambda s: s.w["norm"]),
        ("mu.angle", {"mu": {"norm": 2.0}}, lambda s: s.mu["angle"]),
        ("w.angle", {"w": {"norm": 0.5}}, lambda s: s.w["angle"]),
    ],
)
def test_signal_sets_its_target(target: str, fixed: dict[str, Any], read: Any) -> None:
    spec = parse_sweep(yaml.safe_dump(sweep(signal=target, fixed=fixed)))
    assert spec.signal_target == target
    for i, value in enumerate(spec.grid.signal):
        assert read(spec.scenario(1, 0, i)) == value
    vector, scalar = target.split(".")
    assert scalar not in spec.fixed[vector]


def test_signal_sets_a_covariance_eigenvalue() -> None:
    fixed = {"cov": {"eigenvalues": [1, None, 3], "weights": [0.25, 0.5, 0.25]}}
    spec = parse_sweep(
        yaml.safe_dump(sweep(signal="cov.eigenvalues[1]", grid=grid(signal=[1.5, 4]), fixed=fixed))
    )
    assert spec.signal_target == "cov.eigenvalues[1]"
    assert spec.fixed["cov"] == {"eigenvalues": [1.0, None, 3.0], "weights": [0.25, 0.5, 0.25]}
    assert spec.scenario(1, 0, 1).cov == {"eigenvalues": [1.0, 4.0, 3.0], "weights": [0.25, 0.5, 0.25]}
    assert spec.scenario_at(0.3, "logistic", 2.5).covariance.eigenvalues == (1.0, 2.5, 3.0)
    # Setting the signal leaves the spec's fixed fields alone, and the definition round-trips.
    assert spec.fixed["cov"]["eigenvalues"] == [1.0, None, 3.0]
    assert parse_sweep(yaml.safe_dump(spec.to_dict())) == spec
    # The covariance enters the draw: a larger eigenvalue gives larger features.
    diagonals = [spec.scenario(0, 0, i).embed(spec.p)[0] for i in range(2)]
    assert diagonals[0].max() == 3.0 and diagonals[1].max() == 4.0


def test_other_fields_are_kept_when_the_signal_is_set() -> None:
    spec = parse_sweep(yaml.safe_dump(sweep(signal="w.angle", fixed={"w": {"norm": 0.5, "spread": True}})))
    assert spec.scenario(0, 1, 2).w == {"norm": 0.5, "spread": True, "angle": 2.0}


# ----------------------------------------------------------------------------------------------
# Seeds and tasks
# ----------------------------------------------------------------------------------------------


def test_seeds_are_keyed_by_c_signal_and_trial() -> None:
    spec = parse_sweep(yaml.safe_dump(sweep(seed=11)))
    tasks = list(spec.monte_carlo_tasks())
    assert len(tasks) == 2 * 3 * 2
    assert tasks[:3] == [(0, 0, 0), (0, 0, 1), (0, 1, 0)]
    seeds = [spec.seed_for(*task) for task in tasks]
    assert seeds == [(11, *task) for task in tasks]
    assert len(set(seeds)) == len(seeds)
    assert all(type(x) is int for seed in seeds for x in seed)


def test_losses_of_a_point_share_one_draw() -> None:
    # One draw serves every loss: the scenarios of a point may differ in their loss only.
    spec = parse_sweep(yaml.safe_dump(sweep()))
    for i_c, i_loss, i_signal in spec.points():
        assert spec.scenario(i_c, i_loss, i_signal) == spec.scenario(i_c, 0, i_signal).replace(
            loss=spec.grid.loss[i_loss]
        )


def test_seeds_do_not_depend_on_the_other_axes() -> None:
    a = parse_sweep(yaml.safe_dump(sweep(seed=5)))
    b = parse_sweep(yaml.safe_dump(sweep(seed=5, grid=grid(loss=["logistic"], signal=[0.0, 1.0, 2.0, 3.0]))))
    assert a.seed_for(1, 2, 1) == b.seed_for(1, 2, 1) == (5, 1, 2, 1)


@pytest.mark.parametrize("index", [(2, 0, 0), (0, 3, 0), (0, 0, 2), (-1, 0, 0), (0.0, 0, 0)])
def test_seed_indices_are_checked(index: tuple[Any, Any, Any]) -> None:
    spec = parse_sweep(yaml.safe_dump(sweep()))
    with pytest.raises(IndexError):
        spec.seed_for(*index)


def test_scenario_indices_are_checked() -> None:
    spec = parse_sweep(yaml.safe_dump(sweep()))
    with pytest.raises(IndexError, match="i_loss"):
        spec.scenario(0, 2, 0)


# ----------------------------------------------------------------------------------------------
# Comparison, round trips
# ----------------------------------------------------------------------------------------------


def test_same_definition_compares_equal() -> None:
    # Another formatting of BASE: linspace axis, defaults spelled out, comments, key order.
    text = """
# the same sweep
signal: mu.norm
name: small
seed: 3
trials: 2
p: 40
model: {name: logistic}
grid:
  signal: {start: 0, stop: 2, num: 3}
  loss: [logistic, exponential]
  c: [0.5, 1]
fixed:
  mu: {angle: 90.0, spread: false}
  w_star: {norm: 1}
  cov: {eigenvalues: [1.0]}
montecarlo: {k: 2}
theory: {points: 400}
"""
    a, b = parse_sweep(yaml.safe_dump(BASE)), parse_sweep(text)
    assert a == b
    assert a.to_dict() == b.to_dict()
    assert a.differences(b) == []
    assert hash(a) == hash(b)
    assert a.source_text != b.source_text


def test_differences_name_the_fields() -> None:
    a = parse_sweep(yaml.safe_dump(BASE))
    b = parse_sweep(yaml.safe_dump(sweep(p=80, seed=4, grid=grid(c=[0.5, 2.0]), fixed={"mu": {"angle": 45}})))
    assert a != b
    assert a.differences(b) == [
        "p: 40 != 80",
        "seed: 3 != 4",
        "grid.c: [0.5, 1.0] != [0.5, 2.0]",
        "fixed.mu.angle: 90.0 != 45.0",
    ]
    assert b.differences(a)[0] == "p: 80 != 40"


def test_differences_of_long_axes_are_summarised() -> None:
    a = parse_sweep(yaml.safe_dump(sweep(grid=grid(signal={"start": 0, "stop": 1, "num": 100}))))
    b = parse_sweep(yaml.safe_dump(sweep(grid=grid(signal={"start": 0, "stop": 1, "num": 101}))))
    values = list(a.grid.signal)
    values[37] = 0.5
    c = parse_sweep(yaml.safe_dump(sweep(grid=grid(signal=values))))
    assert a.differences(b) == ["grid.signal: 100 values != 101 values"]
    assert a.differences(c) == [
        f"grid.signal: 100 values differ, first at [37]: {a.grid.signal[37]!r} != 0.5"
    ]


def test_differences_in_model_and_options() -> None:
    a = parse_sweep(yaml.safe_dump(sweep(model={"name": "linear", "noise": 0.5}, grid=grid(loss=["square"]))))
    b = parse_sweep(yaml.safe_dump(sweep(model="linear", grid=grid(loss=["square"]), montecarlo={"k": 3})))
    assert a.differences(b) == ["model.noise: 0.5 != 0.0", "montecarlo.k: 2 != 3"]


@pytest.mark.parametrize(
    "data",
    [
        sweep(),
        sweep(
            model={"name": "linear", "noise": 0.25},
            grid=grid(loss=["square", "phase"]),
            fixed={"labels": {"name": "trim", "threshold": 2}},
        ),
        sweep(
            signal="w.norm",
            fixed={"w": {"angle": 30, "spread": True}},
            grid=grid(c={"start": 0.1, "stop": 3, "num": 4, "scale": "log"}),
        ),
        sweep(
            signal="mu.angle",
            fixed={"mu": {"norm": 1.5}, "cov": {"eigenvalues": [1, 4], "weights": [0.25, 0.75]}},
            grid=grid(signal={"start": 0, "stop": 180, "num": 5}),
            montecarlo={"k": 0},
            theory={"points": 64},
        ),
    ],
)
def test_to_dict_round_trips(data: dict[str, Any]) -> None:
    spec = parse_sweep(yaml.safe_dump(data))
    again = parse_sweep(yaml.safe_dump(spec.to_dict()))
    assert again == spec
    assert again.to_dict() == spec.to_dict()
    assert all(again.scenario(*point) == spec.scenario(*point) for point in spec.points())


def test_quickstart_round_trips() -> None:
    spec = load_sweep(QUICKSTART)
    assert parse_sweep(yaml.safe_dump(spec.to_dict())) == spec
    assert SweepSpec.from_dict(spec.to_dict()) == spec


def test_to_dict_is_a_copy() -> None:
    spec = load_sweep(QUICKSTART)
    data = spec.to_dict()
    data["fixed"]["mu"]["angle"] = 0.0
    data["grid"]["c"].append(2.0)
    assert spec.to_dict()["fixed"]["mu"]["angle"] == 90.0
    assert spec.grid.c == (0.25, 0.5, 1.0)


def test_spec_pickles() -> None:
    # Workers receive the spec, so it must survive pickling whole.
    spec = load_sweep(QUICKSTART)
    again = pickle.loads(pickle.dumps(spec))
    assert again == spec
    assert again.source_text == spec.source_text


def test_the_family_key_names_the_family() -> None:
    from pipeline.sweep import spec_from_dict

    text = "name: a\np: 40\ngrid: {c: [0.5], loss: [square], signal: [1.0]}\nmodel: linear\n"
    spec = parse_sweep("family: glm\n" + text)
    assert spec == parse_sweep(text) and spec.family == "glm"
    assert spec_from_dict(spec.to_dict()) == spec
    with pytest.raises(SweepError, match=r"^family: must be one of glm.*, not 'gml'$"):
        parse_sweep("family: gml\n" + text)
    with pytest.raises(SweepError, match=r"^family: must be one of"):
        parse_sweep("family: [glm]\n" + text)
