"""Scenario validation and geometry (``pipeline.scenario``)."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from pipeline.errors import ScenarioError
from pipeline.scenario import TARGETS, Covariance, Scenario

TWO_BLOCKS = {"eigenvalues": [1.0, 4.0], "weights": [0.25, 0.75]}


def assert_refused(field: str, reason: str, c: object = 0.5, **fields: object) -> None:
    with pytest.raises(ScenarioError, match=reason) as info:
        Scenario(c, **fields)
    assert info.value.field == field


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("c", "reason"),
    [
        (0, "must be > 0"),
        (0.0, "must be > 0"),
        (-1, "must be > 0"),
        (math.nan, "must be finite"),
        (math.inf, "must be finite"),
        (-math.inf, "must be finite"),
        ("a string", "must be a number, not str"),
        (None, "must be a number, not NoneType"),
        (True, "must be a number, not bool"),
    ],
)
def test_bad_c(c: object, reason: str) -> None:
    assert_refused("c", reason, c=c)


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"mu": {"norm": -1.0}}, "mu.norm", "must be >= 0"),
        ({"w_star": {"norm": -0.1}}, "w_star.norm", "must be >= 0"),
        ({"w": {"norm": -2}}, "w.norm", "must be >= 0"),
        ({"mu": {"norm": math.inf}}, "mu.norm", "must be finite"),
        ({"mu": {"norm": "big"}}, "mu.norm", "must be a number"),
        ({"mu": {"angle": math.nan}}, "mu.angle", "must be finite"),
        ({"mu": {"spread": "yes"}}, "mu.spread", "must be true or false"),
        ({"mu": 1.0}, "mu", "must be a mapping"),
        ({"mu": {"norm": 1.0, "direction": 2}}, "mu.direction", "unknown key"),
        ({"w_star": {"angle": 30}}, "w_star.angle", "unknown key"),
        ({"w": {"norm": 1.0, "tilt": 3}}, "w.tilt", "unknown key"),
        ({"w": "origin"}, "w", "must be 'w_star', 'zero' or a mapping"),
        ({"w": 0}, "w", "must be a mapping"),
    ],
)
def test_bad_vectors(fields: dict, field: str, reason: str) -> None:
    assert_refused(field, reason, **fields)


@pytest.mark.parametrize(
    ("cov", "field", "reason"),
    [
        ({"eigenvalues": [1.0], "weights": [1.0], "shape": "diag"}, "cov.shape", "unknown key"),
        ({"eigenvalues": [1.0, 2.0], "weights": [0.5, 0.4]}, "cov.weights", "must sum to 1"),
        ({"eigenvalues": [1.0, 2.0], "weights": [0.7, 0.7]}, "cov.weights", "must sum to 1"),
        ({"eigenvalues": [1.0, 0.0], "weights": [0.5, 0.5]}, "cov.eigenvalues[1]", "must be > 0"),
        ({"eigenvalues": [-2.0]}, "cov.eigenvalues[0]", "must be > 0"),
        ({"eigenvalues": [1.0, math.nan]}, "cov.eigenvalues[1]", "must be finite"),
        ({"eigenvalues": [1.0, 2.0], "weights": [1.0]}, "cov.weights", "must be a list of 2 fractions"),
        ({"eigenvalues": [1.0], "weights": [0.5, 0.5]}, "cov.weights", "must be a list of 1 fractions"),
        ({"eigenvalues": [1.0, 2.0], "weights": [1.5, -0.5]}, "cov.weights[1]", "must be > 0"),
        ({"eigenvalues": []}, "cov.eigenvalues", "must be a non-empty list"),
        ({"weights": [1.0]}, "cov.eigenvalues", "must be a non-empty list"),
        ([1.0, 2.0], "cov", "must be a mapping"),
    ],
)
def test_bad_covariance(cov: object, field: str, reason: str) -> None:
    assert_refused(field, reason, cov=cov)


def test_covariance_weights_default_to_equal() -> None:
    assert Scenario(0.5, cov={"eigenvalues": [1, 2, 3]}).covariance.weights == pytest.approx((1 / 3,) * 3)


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"model": "probit"}, "model", "unknown model 'probit'"),
        ({"model": {"name": "linear", "noise": -1.0}}, "model.noise", "must be >= 0"),
        ({"loss": "hinge"}, "loss", "unknown loss 'hinge'"),
        ({"model": "phase", "loss": "logistic"}, "loss", "needs labels in"),
        ({"model": "phase", "loss": "exponential"}, "loss", "needs labels in"),
        ({"model": "linear", "loss": "logistic"}, "loss", "real-valued labels"),
        ({"model": "linear", "loss": "exponential"}, "loss", "real-valued labels"),
        ({"model": "logistic", "loss": "square", "labels": "optimal"}, "labels", "needs real-valued labels"),
        (
            {"model": "logistic", "labels": {"name": "trim", "threshold": 1.0}},
            "labels",
            "needs real-valued labels",
        ),
        ({"model": "phase", "loss": "phase", "labels": "clip"}, "labels", "unknown label transform"),
    ],
)
def test_bad_model_loss_labels(fields: dict, field: str, reason: str) -> None:
    assert_refused(field, reason, **fields)


@pytest.mark.parametrize("c", [2.0, 4.0])
def test_optimal_transform_needs_c_below_2(c: float) -> None:
    assert_refused("labels", "c < 2", c=c, model="phase", loss="phase", labels="optimal")
    assert Scenario(1.99, model="phase", loss="phase", labels="optimal").labels == "optimal"


def test_replace_validates_again() -> None:
    s = Scenario(0.5)
    assert s.replace(c=2.0).c == 2.0
    with pytest.raises(ScenarioError) as info:
        s.replace(mu={"norm": -1.0})
    assert info.value.field == "mu.norm"


# ----------------------------------------------------------------------------------------------
# Normal form
# ----------------------------------------------------------------------------------------------


def test_fields_are_normalised() -> None:
    s = Scenario(1, model={"name": "linear"}, loss="square", mu={"norm": 2}, w={"norm": 1, "angle": 45})
    assert isinstance(s.c, float)
    assert s.to_dict() == {
        "c": 1.0,
        "model": {"name": "linear", "noise": 0.0},
        "loss": "square",
        "mu": {"norm": 2.0, "angle": 0.0, "spread": False},
        "w_star": {"norm": 1.0, "spread": False},
        "w": {"norm": 1.0, "angle": 45.0, "spread": False},
        "cov": {"eigenvalues": [1.0], "weights": [1.0]},
        "labels": "raw",
    }
    assert Scenario(**s.to_dict()) == s
    assert Scenario(0.5, model={"name": "phase"}, loss="phase").model == "phase"


def test_scenario_pickles() -> None:
    s = Scenario(
        0.3,
        model="phase",
        loss="phase",
        mu={"norm": 1.0, "angle": 60, "spread": True},
        w={"norm": 0.5, "angle": 90},
        cov=TWO_BLOCKS,
        labels={"name": "trim", "threshold": 2.0},
    )
    before = s.coefficients  # a filled cache must travel too
    copy = pickle.loads(pickle.dumps(s))
    assert copy == s
    assert copy.to_dict() == s.to_dict()
    for name in TARGETS:
        np.testing.assert_array_equal(copy.coefficients[name], before[name])


# ----------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------


def test_w_star_along_e1_and_mu_at_right_angle_exact() -> None:
    s = Scenario(0.5, mu={"norm": 2.0, "angle": 90}, w_star={"norm": 1.5}, w={"norm": 3.0, "angle": 180})
    coefficients = s.coefficients
    assert set(coefficients) == set(TARGETS)
    # Exact equality on purpose: cos 90° and sin 180° are float residue that must not leak into e₁/e₂.
    assert coefficients["w_star"].tolist() == [[1.5, 0.0]]
    assert coefficients["mu"].tolist() == [[0.0, 2.0]]
    assert coefficients["w"].tolist() == [[-3.0, 0.0]]
    assert not coefficients["mu"].flags.writeable


def test_vector_at_an_angle() -> None:
    s = Scenario(0.5, mu={"norm": 2.0, "angle": 30})
    np.testing.assert_allclose(s.coefficients["mu"], [[math.sqrt(3), 1.0]], rtol=1e-15)


def test_vectors_held_in_first_block_by_default() -> None:
    s = Scenario(0.5, mu={"norm": 2.0, "angle": 90}, cov=TWO_BLOCKS)
    assert s.coefficients["mu"].tolist() == [[0.0, 2.0], [0.0, 0.0]]
    assert s.coefficients["w_star"].tolist() == [[1.0, 0.0], [0.0, 0.0]]


def test_spread_vectors_have_block_weights_sqrt_pi() -> None:
    cov = {"eigenvalues": [1.0, 2.0, 4.0], "weights": [0.2, 0.3, 0.5]}
    s = Scenario(
        0.5, mu={"norm": 2.0, "angle": 90, "spread": True}, w_star={"norm": 1.5, "spread": True}, cov=cov
    )
    root_pi = np.sqrt(cov["weights"])
    np.testing.assert_allclose(s.coefficients["mu"], np.outer(root_pi, [0.0, 2.0]), rtol=1e-15)
    np.testing.assert_allclose(s.coefficients["w_star"], np.outer(root_pi, [1.5, 0.0]), rtol=1e-15)
    assert np.linalg.norm(s.coefficients["mu"]) == pytest.approx(2.0, rel=1e-15)
    assert np.linalg.norm(s.coefficients["w_star"]) == pytest.approx(1.5, rel=1e-15)


def test_w_from_w_star_and_zero() -> None:
    s = Scenario(0.5, w_star={"norm": 1.5, "spread": True}, cov=TWO_BLOCKS)
    np.testing.assert_array_equal(s.coefficients["w"], s.coefficients["w_star"])
    zero = s.replace(w="zero")
    assert not np.any(zero.coefficients["w"])
    assert zero.coefficients["w"].shape == (2, 2)
    assert zero.h_constant and not zero.h_star_constant
    assert not s.h_constant


@pytest.mark.parametrize("p", [10, 101, 800])
def test_embed(p: int) -> None:
    cov = {"eigenvalues": [1.0, 2.0, 4.0], "weights": [0.2, 0.3, 0.5]}
    s = Scenario(
        0.5,
        mu={"norm": 2.0, "angle": 60, "spread": True},
        w_star={"norm": 1.5},
        w={"norm": 0.7, "angle": 90},
        cov=cov,
    )
    diagonal, vectors = s.embed(p)
    assert diagonal.shape == (p,)
    assert set(vectors) == set(TARGETS)
    sizes = [int(np.sum(diagonal == t)) for t in cov["eigenvalues"]]
    assert sum(sizes) == p
    for size, weight in zip(sizes, cov["weights"], strict=True):
        assert abs(size - weight * p) < 1  # largest remainders: within one of the exact share
    # Blocks in order, first block first.
    np.testing.assert_array_equal(diagonal, np.repeat(cov["eigenvalues"], sizes))
    for name, norm in (("mu", 2.0), ("w_star", 1.5), ("w", 0.7)):
        assert vectors[name].shape == (p,)
        assert np.linalg.norm(vectors[name]) == pytest.approx(norm, rel=1e-14)
    # w* = ‖w*‖ e₁ of the first block, w ⟂ w* (angle 90°), μ at 60° to w*.
    assert vectors["w_star"][0] == 1.5 and np.count_nonzero(vectors["w_star"]) == 1
    assert vectors["w"] @ vectors["w_star"] == 0.0
    assert vectors["mu"] @ vectors["w_star"] / (2.0 * 1.5) == pytest.approx(0.5 * math.sqrt(0.2))
    # Spread μ puts weight √π_j on block j: its C-norm is ‖μ‖² Σ π_j t_j.
    mu_c_norm = vectors["mu"] @ (diagonal * vectors["mu"])
    assert mu_c_norm == pytest.approx(4.0 * np.dot(cov["weights"], cov["eigenvalues"]), rel=1e-14)


def test_block_sizes() -> None:
    covariance = Covariance((1.0, 2.0, 3.0), (1 / 3, 1 / 3, 1 / 3))
    assert covariance.block_sizes(101).tolist() == [34, 34, 33]
    assert covariance.block_sizes(6).tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match="fewer than 2 coordinates"):
        covariance.block_sizes(5)
    skewed = Scenario(0.5, cov={"eigenvalues": [1.0, 2.0], "weights": [0.99, 0.01]})
    with pytest.raises(ValueError, match="fewer than 2 coordinates"):
        skewed.embed(100)
    assert skewed.covariance.block_sizes(200).tolist() == [198, 2]


# ----------------------------------------------------------------------------------------------
# Boundedness of the curvature law ν
# ----------------------------------------------------------------------------------------------

PHASE = {"model": "phase", "loss": "phase"}


@pytest.mark.parametrize(
    ("fields", "bounds"),
    [
        ({"loss": "logistic", "mu": {"norm": 3.0}}, (True, True)),
        ({"loss": "logistic", "w": {"norm": 5.0, "angle": 90}}, (True, True)),
        ({"loss": "exponential"}, (True, False)),
        ({"loss": "exponential", "w": {"norm": 1.0, "angle": 90}}, (True, False)),
        ({"loss": "exponential", "w": "zero"}, (True, True)),
        ({**PHASE, "w": "zero"}, (False, True)),  # g = −y = −(h*)², unbounded below
        ({**PHASE, "w": "zero", "w_star": {"norm": 0.0}}, (True, True)),  # y ≡ 0
        ({**PHASE, "w": "zero", "labels": {"name": "trim", "threshold": 3.0}}, (True, True)),
        ({**PHASE, "w": "zero", "labels": "optimal"}, (True, True)),
        ({**PHASE, "labels": "optimal"}, (True, False)),  # 3h² with w ≠ 0
        ({**PHASE}, (False, False)),
        ({"model": {"name": "linear", "noise": 0.5}, "loss": "square"}, (True, True)),
        ({"model": "phase", "loss": "square", "w": {"norm": 2.0}}, (True, True)),
    ],
)
def test_curvature_bounds(fields: dict, bounds: tuple[bool, bool]) -> None:
    s = Scenario(0.5, **fields)
    assert s.curvature_bounds == bounds
    assert s.curvature_bounded == all(bounds)


def test_curvature_applies_the_label_transform() -> None:
    s = Scenario(0.5, **PHASE, labels={"name": "trim", "threshold": 2.0})
    y = np.array([1.0, 3.0])
    h = np.array([0.5, 0.5])
    np.testing.assert_allclose(s.curvature(y, h), [3 * 0.25 - 1.0, 3 * 0.25 - 2.0])
