"""Response models, label transforms and losses (``pipeline.models``) against glm.md's definitions."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from pipeline.errors import ScenarioError
from pipeline.models import (
    LABEL_TRANSFORMS,
    LOSSES,
    MODELS,
    get_loss,
    make_label_transform,
    make_model,
)

# The losses ℓ(y, h) themselves, written from shared/theory/glm.md: the package only implements
# their curvature, so these are the independent reference.
LOSS_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "logistic": lambda y, h: np.log1p(np.exp(-y * h)),
    "exponential": lambda y, h: np.exp(-y * h),
    "square": lambda y, h: (y - h) ** 2 / 2,
    "phase": lambda y, h: (y - h**2) ** 2 / 4,
    "spectral": lambda y, h: y * h**2 / 2,
}

# Central second difference: truncation error ≈ ε² ℓ''''/12 ≈ 1e-8 and rounding error
# ≈ 4 ulp(ℓ)/ε² ≈ 1e-8 · |ℓ| for ε = 1e-4 and the |ℓ| ≲ 10 used here; 1e-6 leaves a margin of 100.
FD_STEP = 1e-4
FD_TOLERANCE = 1e-6

H_POINTS = np.array([-2.5, -0.7, 0.0, 0.3, 1.1, 2.5])
BINARY_LABELS = np.array([-1.0, 1.0])
REAL_LABELS = np.array([-1.3, 0.0, 0.4, 2.0])

# Statistical tests: a sample mean is accepted within 5 standard errors (a false failure has
# probability ≈ 6e-7 per comparison), from 10^5 draws.
N_DRAWS = 100_000
N_SE = 5.0


def second_difference(loss: Callable[[np.ndarray, np.ndarray], np.ndarray], y: np.ndarray, h: np.ndarray):
    return (loss(y, h + FD_STEP) - 2 * loss(y, h) + loss(y, h - FD_STEP)) / FD_STEP**2


def test_registries_are_keyed_by_name() -> None:
    assert set(MODELS) == {"logistic", "phase", "linear"}
    assert set(LOSSES) == {"logistic", "exponential", "square", "phase", "spectral"}
    assert LABEL_TRANSFORMS == ("raw", "trim", "optimal")
    assert all(model.name == key for key, model in MODELS.items())
    assert all(loss.name == key for key, loss in LOSSES.items())


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_curvature_is_second_derivative_of_loss(name: str) -> None:
    loss = get_loss(name)
    labels = BINARY_LABELS if loss.binary_labels else REAL_LABELS
    y, h = np.meshgrid(labels, H_POINTS, indexing="ij")
    expected = second_difference(LOSS_FUNCTIONS[name], y, h)
    np.testing.assert_allclose(loss.curvature(y, h), expected, rtol=FD_TOLERANCE, atol=FD_TOLERANCE)


def test_binary_label_flags() -> None:
    assert {name for name, loss in LOSSES.items() if loss.binary_labels} == {"logistic", "exponential"}
    assert {name for name, model in MODELS.items() if model.binary_labels} == {"logistic"}


def test_logistic_curvature_finite_for_large_margins() -> None:
    margin = np.concatenate([-np.logspace(-3, 3, 61), [0.0], np.logspace(-3, 3, 61)])
    y = np.where(np.arange(margin.size) % 2 == 0, 1.0, -1.0)
    h = margin / y
    # Overflow, invalid operations or division by zero would raise here (underflow to 0 is fine).
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        g = get_loss("logistic").curvature(y, h)
    assert np.all(np.isfinite(g))
    assert np.all(g >= 0)
    assert np.all(g <= 0.25)
    assert g[margin == 0.0] == pytest.approx(0.25)
    # σ(t)(1 − σ(t)) ≈ e^{−|t|} for large |t|: check it decays at that rate rather than to 0 early.
    at_30 = get_loss("logistic").curvature(np.array(1.0), np.array(30.0))
    assert at_30 == pytest.approx(math.exp(-30.0), rel=1e-12)


def test_square_curvature_has_broadcast_shape() -> None:
    g = get_loss("square").curvature(np.zeros((3, 1)), np.zeros(4))
    assert g.shape == (3, 4)
    assert np.all(g == 1.0)


# ----------------------------------------------------------------------------------------------
# Response models: quadrature of y | h* and sampling
# ----------------------------------------------------------------------------------------------

H_STAR = np.array([-3.0, -0.5, 0.0, 0.8, 2.0])
NOISE = 0.7


def conditional_moments(spec, h_star: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E[y | h*] and E[y² | h*] from glm.md's definitions of the models."""
    name = spec if isinstance(spec, str) else spec["name"]
    if name == "logistic":
        return np.tanh(h_star / 2), np.ones_like(h_star)
    if name == "phase":
        return h_star**2, h_star**4
    noise = spec.get("noise", 0.0) if isinstance(spec, dict) else 0.0
    return h_star, h_star**2 + noise**2


def conditional_fourth_moment(spec, h_star: float) -> float:
    if spec == "logistic":
        return 1.0
    noise = spec["noise"]
    return h_star**4 + 6 * h_star**2 * noise**2 + 3 * noise**4


MODEL_SPECS = ["logistic", "phase", "linear", {"name": "linear", "noise": NOISE}]
MODEL_IDS = ["logistic", "phase", "linear", "linear-noisy"]


@pytest.mark.parametrize("spec", MODEL_SPECS, ids=MODEL_IDS)
def test_label_quadrature_moments(spec) -> None:
    y, weight = make_model(spec).label_nodes(H_STAR)
    assert y.shape == weight.shape
    assert y.shape[:-1] == H_STAR.shape
    np.testing.assert_allclose(weight.sum(axis=-1), 1.0, rtol=1e-14)
    assert np.all(weight >= 0)
    mean, second = conditional_moments(spec, H_STAR)
    np.testing.assert_allclose((weight * y).sum(axis=-1), mean, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose((weight * y**2).sum(axis=-1), second, rtol=1e-12, atol=1e-13)


def test_linear_quadrature_is_exact_for_higher_moments() -> None:
    # Gaussian noise: E[y⁴ | h*] = h⁴ + 6h²σ² + 3σ⁴, a degree the 24 Gauss–Hermite nodes integrate exactly.
    y, weight = make_model({"name": "linear", "noise": NOISE}).label_nodes(H_STAR)
    expected = H_STAR**4 + 6 * H_STAR**2 * NOISE**2 + 3 * NOISE**4
    np.testing.assert_allclose((weight * y**4).sum(axis=-1), expected, rtol=1e-12)


def test_label_quadrature_accepts_a_scalar() -> None:
    y, weight = make_model("logistic").label_nodes(np.float64(0.0))
    assert y.shape == weight.shape == (2,)
    np.testing.assert_allclose(weight, [0.5, 0.5])


@pytest.mark.parametrize("spec", MODEL_SPECS, ids=MODEL_IDS)
@pytest.mark.parametrize("h_star", [-1.5, 0.0, 0.6])
def test_sample_moments(spec, h_star: float, rng: np.random.Generator) -> None:
    y = make_model(spec).sample(np.full(N_DRAWS, h_star), rng)
    assert y.shape == (N_DRAWS,)
    mean, second = conditional_moments(spec, np.array(h_star))
    if not isinstance(spec, str) or spec == "logistic":
        # Random labels: compare within N_SE standard errors of the exact variance of y and of y².
        variance = second - mean**2
        fourth = conditional_fourth_moment(spec, h_star)
        assert abs(y.mean() - mean) <= N_SE * math.sqrt(variance / N_DRAWS)
        assert abs((y**2).mean() - second) <= N_SE * math.sqrt(max(fourth - second**2, 0.0) / N_DRAWS) + 1e-12
    else:
        # Noiseless models are deterministic given h*.
        np.testing.assert_allclose(y, mean)
    if spec == "logistic":
        assert set(np.unique(y)) <= {-1.0, 1.0}


def test_label_bounds() -> None:
    # (bounded below, bounded above) of y, given whether h* is a.s. constant.
    assert make_model("logistic").label_bounds(h_star_constant=False) == (True, True)
    assert make_model("phase").label_bounds(h_star_constant=False) == (True, False)  # y = h*² ≥ 0
    assert make_model("phase").label_bounds(h_star_constant=True) == (True, True)
    assert make_model("linear").label_bounds(h_star_constant=False) == (False, False)
    assert make_model("linear").label_bounds(h_star_constant=True) == (True, True)
    assert make_model({"name": "linear", "noise": 0.1}).label_bounds(h_star_constant=True) == (False, False)


@pytest.mark.parametrize(
    ("name", "h_constant", "label_bounds", "expected"),
    [
        ("logistic", False, (True, True), (True, True)),
        ("exponential", False, (True, True), (True, False)),  # g = e^{−yh} > 0, unbounded above
        ("exponential", True, (True, True), (True, True)),
        ("square", False, (False, False), (True, True)),
        ("phase", True, (True, True), (True, True)),
        ("phase", True, (True, False), (False, True)),  # g = 3h² − y: y unbounded above
        ("phase", False, (True, True), (True, False)),  # 3h² unbounded above
        ("phase", True, (False, True), (True, False)),
        ("spectral", False, (True, False), (True, False)),  # g = y: bounded where the labels are
        ("spectral", False, (True, True), (True, True)),
    ],
)
def test_loss_bounds(name: str, h_constant: bool, label_bounds: tuple[bool, bool], expected) -> None:
    assert get_loss(name).bounds(h_constant, label_bounds) == expected


def test_model_params_round_trip() -> None:
    model = make_model({"name": "linear", "noise": 0.5})
    assert make_model({"name": model.name, **model.params()}).noise == 0.5
    assert make_model("phase").params() == {}


# ----------------------------------------------------------------------------------------------
# Label transforms
# ----------------------------------------------------------------------------------------------

Y = np.array([-1e12, -3.0, -0.5, 0.0, 0.5, 1.0, 1.5, 4.0, 1e6, 1e12])


def test_raw_transform_is_identity() -> None:
    transform = make_label_transform("raw", 0.5)
    assert not transform.bounded
    np.testing.assert_array_equal(transform.apply(Y, 0.5), Y)


def test_trim_transform_clips_large_labels() -> None:
    transform = make_label_transform({"name": "trim", "threshold": 1.5}, 0.5)
    assert transform.bounded
    assert transform.params() == {"threshold": 1.5}
    expected = np.where(np.abs(Y) <= 1.5, Y, np.sign(Y) * 1.5)
    np.testing.assert_array_equal(transform.apply(Y, 0.5), expected)
    assert np.all(np.abs(transform.apply(Y, 0.5)) <= 1.5)


@pytest.mark.parametrize("c", [0.1, 0.5, 1.0, 1.9])
def test_optimal_transform_formula_and_bound(c: float) -> None:
    transform = make_label_transform("optimal", c)
    assert transform.bounded
    y_plus = np.maximum(Y, 0.0)
    expected = (y_plus - 1.0) / (y_plus + math.sqrt(2.0 / c) - 1.0)
    values = transform.apply(Y, c)
    np.testing.assert_allclose(values, expected, rtol=1e-15)
    # For c < 2 the denominator is at least √(2/c) − 1 > 0, so T ∈ [−1/(√(2/c) − 1), 1].
    assert np.all(np.isfinite(values))
    assert np.all(values <= 1.0)
    assert np.all(values >= -1.0 / (math.sqrt(2.0 / c) - 1.0) - 1e-12)
    assert values[Y == 1.0] == 0.0


# ----------------------------------------------------------------------------------------------
# Registry errors name the field
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        ("probit", "model", "unknown model 'probit'"),
        ({"name": "probit"}, "model", "unknown model"),
        ({"noise": 0.1}, "model.name", "must be given"),
        (3, "model", "must be a name or a mapping"),
        ({"name": "linear", "sigma": 0.1}, "model.sigma", "unknown parameter"),
        ({"name": "logistic", "noise": 0.1}, "model.noise", "unknown parameter"),
        ({"name": "linear", "noise": -0.1}, "model.noise", "must be >= 0"),
        ({"name": "linear", "noise": math.inf}, "model.noise", "must be finite"),
        ({"name": "linear", "noise": "loud"}, "model.noise", "must be a number"),
        ({"name": "linear", "noise": True}, "model.noise", "must be a number"),
    ],
)
def test_model_errors(spec, field: str, reason: str) -> None:
    with pytest.raises(ScenarioError, match=reason) as info:
        make_model(spec)
    assert info.value.field == field


@pytest.mark.parametrize("name", ["hinge", None, 3, "Logistic"])
def test_unknown_loss(name) -> None:
    with pytest.raises(ScenarioError, match="unknown loss") as info:
        get_loss(name)
    assert info.value.field == "loss"


@pytest.mark.parametrize(
    ("spec", "c", "field", "reason"),
    [
        ("clip", 0.5, "labels", "unknown label transform 'clip'"),
        ({"name": "trim"}, 0.5, "labels.threshold", "is required"),
        ({"name": "trim", "threshold": 0.0}, 0.5, "labels.threshold", "must be > 0"),
        ({"name": "trim", "threshold": math.nan}, 0.5, "labels.threshold", "must be finite"),
        ({"name": "trim", "threshold": 1.0, "level": 2}, 0.5, "labels.level", "unknown parameter"),
        ({"name": "raw", "threshold": 1.0}, 0.5, "labels.threshold", "unknown parameter"),
        ("optimal", 2.0, "labels", "c < 2"),
        ("optimal", 3.5, "labels", "c < 2"),
    ],
)
def test_label_transform_errors(spec, c: float, field: str, reason: str) -> None:
    with pytest.raises(ScenarioError, match=reason) as info:
        make_label_transform(spec, c)
    assert info.value.field == field


def test_scenario_error_is_a_value_error_naming_the_field() -> None:
    error = ScenarioError("cov.weights", "must sum to 1")
    assert isinstance(error, ValueError)
    assert str(error) == "cov.weights: must sum to 1"
    assert (error.field, error.reason) == ("cov.weights", "must sum to 1")
