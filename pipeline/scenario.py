"""One grid point's physics: ``c``, response model, loss, feature mean, covariance and weights.

Geometry (``shared/theory/glm.md``, "Parametrising a grid point"): the covariance ``C`` is
diagonal, with eigenvalue ``t_j`` on a block of a fraction ``π_j`` of the coordinates (first block
first).  Every vector of the scenario lives in the span of ``e₁⁽ʲ⁾, e₂⁽ʲ⁾``, the first two
coordinates of block ``j``: ``w* = ‖w*‖ e₁``, while ``μ`` and ``w`` are given by a norm and an angle
to ``w*`` in the ``(e₁, e₂)`` plane.  A vector is either held in the first block (the default) or
spread over all blocks with weight ``√π_j`` on block ``j``, as a random ``N(0, I/p)`` direction is.
Theory and Monte Carlo both read the vectors from :meth:`Scenario.coefficients`, so they describe
the same matrix.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from pipeline.errors import ScenarioError
from pipeline.models import (
    LabelTransform,
    Loss,
    ResponseModel,
    get_loss,
    make_label_transform,
    make_model,
)

__all__ = ["TARGETS", "Covariance", "Scenario"]

#: The vectors whose alignment with eigenvectors is measured, in cube order.
TARGETS = ("mu", "w_star", "w")

# Covariance weights are fractions given by people (0.5, 0.25, ...): allow float rounding only.
_WEIGHT_SUM_TOLERANCE = 1e-9
# Relative size below which a trigonometric component is floating-point residue (a few ulps).
_ROUNDING = 1e-15


def _number(value: Any, field_path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ScenarioError(field_path, f"must be a number, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ScenarioError(field_path, "must be finite")
    return number


def _non_negative(value: Any, field_path: str) -> float:
    number = _number(value, field_path)
    if number < 0:
        raise ScenarioError(field_path, "must be >= 0")
    return number


def _vector_spec(spec: Any, field_path: str, *, angle: bool) -> dict[str, Any]:
    """Validate ``{norm, angle, spread}`` and fill in the defaults."""
    if not isinstance(spec, Mapping):
        raise ScenarioError(field_path, f"must be a mapping like {{norm: 1.0}}, not {spec!r}")
    allowed = {"norm", "angle", "spread"} if angle else {"norm", "spread"}
    for key in spec:
        if key not in allowed:
            raise ScenarioError(f"{field_path}.{key}", f"unknown key (known: {', '.join(sorted(allowed))})")
    norm = _non_negative(spec.get("norm", 0.0), f"{field_path}.norm")
    spread = spec.get("spread", False)
    if not isinstance(spread, bool):
        raise ScenarioError(f"{field_path}.spread", "must be true or false")
    result: dict[str, Any] = {"norm": norm, "spread": spread}
    if angle:
        result["angle"] = _number(spec.get("angle", 0.0), f"{field_path}.angle")
    return result


@dataclass(frozen=True)
class Covariance:
    """A diagonal covariance: eigenvalue ``eigenvalues[j]`` on a fraction ``weights[j]``."""

    eigenvalues: tuple[float, ...]
    weights: tuple[float, ...]

    @classmethod
    def from_spec(cls, spec: Any) -> Covariance:
        """Validate ``{eigenvalues: [...], weights: [...]}`` (weights default to equal)."""
        if not isinstance(spec, Mapping):
            raise ScenarioError("cov", "must be a mapping with eigenvalues and weights")
        for key in spec:
            if key not in ("eigenvalues", "weights"):
                raise ScenarioError(f"cov.{key}", "unknown key (known: eigenvalues, weights)")
        eigenvalues = spec.get("eigenvalues")
        if not isinstance(eigenvalues, (list, tuple)) or not eigenvalues:
            raise ScenarioError("cov.eigenvalues", "must be a non-empty list")
        values = tuple(_number(v, f"cov.eigenvalues[{i}]") for i, v in enumerate(eigenvalues))
        for i, v in enumerate(values):
            if v <= 0:
                raise ScenarioError(f"cov.eigenvalues[{i}]", "must be > 0")
        raw_weights = spec.get("weights", [1.0 / len(values)] * len(values))
        if not isinstance(raw_weights, (list, tuple)) or len(raw_weights) != len(values):
            raise ScenarioError("cov.weights", f"must be a list of {len(values)} fractions")
        weights = tuple(_number(v, f"cov.weights[{i}]") for i, v in enumerate(raw_weights))
        for i, v in enumerate(weights):
            if v <= 0:
                raise ScenarioError(f"cov.weights[{i}]", "must be > 0")
        if abs(sum(weights) - 1.0) > _WEIGHT_SUM_TOLERANCE:
            raise ScenarioError("cov.weights", f"must sum to 1 (they sum to {sum(weights):g})")
        return cls(values, weights)

    def block_sizes(self, p: int) -> np.ndarray:
        """Integer block sizes summing to ``p`` (largest remainders), each at least 2.

        Raises
        ------
        ValueError
            If ``p`` is too small to give every block the two coordinates ``e₁, e₂``.
        """
        exact = np.asarray(self.weights) * p
        sizes = np.floor(exact).astype(int)
        order = np.argsort(-(exact - sizes), kind="stable")
        sizes[order[: p - sizes.sum()]] += 1
        if sizes.min() < 2:
            raise ValueError(f"p = {p} gives a covariance block fewer than 2 coordinates")
        return sizes


@dataclass(frozen=True)
class Scenario:
    """The physics of one grid point, validated on construction.

    Parameters
    ----------
    c : float
        Dimension ratio ``p/n``, ``> 0``.
    model : str or mapping, default ``"logistic"``
        Response model: ``"logistic"``, ``"phase"``, ``"linear"`` or ``{name: linear, noise: σ}``.
    loss : str, default ``"logistic"``
        ``"logistic"``, ``"exponential"``, ``"square"``, ``"phase"`` or ``"spectral"``
        (``ℓ = T(y) h²/2``: the spectral-initialisation matrix ``(1/n) Σ T(yᵢ) xᵢxᵢᵀ``).
    mu : mapping, default ``{"norm": 0}``
        Feature mean ``{norm, angle, spread}``; ``angle`` in degrees to ``w*``.
    w_star : mapping, default ``{"norm": 1}``
        Teacher vector ``{norm, spread}``, along ``e₁``.
    w : str or mapping, default ``"w_star"``
        Where the Hessian is taken: ``"w_star"``, ``"zero"`` or ``{norm, angle, spread}``.
    cov : mapping, default identity
        ``{eigenvalues: [t_1, ...], weights: [π_1, ...]}``.
    labels : str or mapping, default ``"raw"``
        Label preprocessing for real-valued labels: ``"raw"``, ``"optimal"`` or
        ``{name: trim, threshold: τ}``.

    Raises
    ------
    ScenarioError
        Naming the field at fault, e.g. ``cov.weights: must sum to 1 (they sum to 0.9)``.

    Examples
    --------
    >>> s = Scenario(0.5, loss="square", mu={"norm": 2.0, "angle": 90})
    >>> s.coefficients["mu"][0].round(12).tolist()
    [0.0, 2.0]
    """

    c: float
    model: str | Mapping[str, Any] = "logistic"
    loss: str = "logistic"
    mu: Mapping[str, Any] = field(default_factory=lambda: {"norm": 0.0})
    w_star: Mapping[str, Any] = field(default_factory=lambda: {"norm": 1.0})
    w: str | Mapping[str, Any] = "w_star"
    cov: Mapping[str, Any] = field(default_factory=lambda: {"eigenvalues": [1.0], "weights": [1.0]})
    labels: str | Mapping[str, Any] = "raw"

    def __post_init__(self) -> None:
        c = _number(self.c, "c")
        if c <= 0:
            raise ScenarioError("c", "must be > 0")
        set_ = object.__setattr__
        set_(self, "c", c)
        model = make_model(self.model)
        loss = get_loss(self.loss)
        if loss.binary_labels and not model.binary_labels:
            raise ScenarioError(
                "loss",
                f"the {loss.name} loss needs labels in {{-1, +1}}, "
                f"but the {model.name} model gives real-valued labels",
            )
        transform = make_label_transform(self.labels, c)
        if transform.name != "raw" and model.binary_labels:
            raise ScenarioError(
                "labels", f"a label transform needs real-valued labels; the {model.name} model's are ±1"
            )
        covariance = Covariance.from_spec(self.cov)
        set_(self, "model", {"name": model.name, **model.params()} if model.params() else model.name)
        labels = {"name": transform.name, **transform.params()} if transform.params() else transform.name
        set_(self, "labels", labels)
        set_(self, "cov", {"eigenvalues": list(covariance.eigenvalues), "weights": list(covariance.weights)})
        set_(self, "mu", _vector_spec(self.mu, "mu", angle=True))
        set_(self, "w_star", _vector_spec(self.w_star, "w_star", angle=False))
        if isinstance(self.w, str):
            if self.w not in ("w_star", "zero"):
                raise ScenarioError("w", f"must be 'w_star', 'zero' or a mapping, not {self.w!r}")
        else:
            set_(self, "w", _vector_spec(self.w, "w", angle=True))

    # -- derived objects (cached: a Scenario is immutable) ------------------------------------

    @cached_property
    def response_model(self) -> ResponseModel:
        """The response model object."""
        return make_model(self.model)

    @cached_property
    def loss_function(self) -> Loss:
        """The loss object."""
        return get_loss(self.loss)

    @cached_property
    def label_transform(self) -> LabelTransform:
        """The label preprocessing ``T``."""
        return make_label_transform(self.labels, self.c)

    @cached_property
    def covariance(self) -> Covariance:
        """The covariance's eigenvalues and block fractions."""
        return Covariance.from_spec(self.cov)

    @cached_property
    def coefficients(self) -> dict[str, np.ndarray]:
        """Each target vector as a ``(J, 2)`` array of coefficients on ``(e₁⁽ʲ⁾, e₂⁽ʲ⁾)``."""
        weights = np.asarray(self.covariance.weights)

        def place(norm: float, angle_deg: float, spread: bool) -> np.ndarray:
            theta = math.radians(angle_deg)
            direction = norm * np.array([math.cos(theta), math.sin(theta)])
            # cos(90°) is 6e-17 in floating point: keep the axes of whole right angles exact.
            direction[np.abs(direction) < _ROUNDING * norm] = 0.0
            share = np.sqrt(weights) if spread else np.eye(len(weights))[0]
            return share[:, None] * direction[None, :]

        w_star = place(self.w_star["norm"], 0.0, self.w_star["spread"])
        if isinstance(self.w, Mapping):
            w = place(self.w["norm"], self.w["angle"], self.w["spread"])
        elif self.w == "w_star":
            w = w_star.copy()
        else:
            w = np.zeros_like(w_star)
        mu = place(self.mu["norm"], self.mu["angle"], self.mu["spread"])
        for vector in (mu, w_star, w):
            vector.flags.writeable = False
        return {"mu": mu, "w_star": w_star, "w": w}

    @property
    def h_constant(self) -> bool:
        """``h = wᵀx`` is a.s. constant (``w = 0``)."""
        return not np.any(self.coefficients["w"])

    @property
    def h_star_constant(self) -> bool:
        """``h* = w*ᵀx`` is a.s. constant (``w* = 0``)."""
        return not np.any(self.coefficients["w_star"])

    @property
    def curvature_bounds(self) -> tuple[bool, bool]:
        """Whether ``g`` is bounded (below, above): the spectral support is bounded on that side."""
        if self.label_transform.bounded:
            label_bounds = (True, True)
        else:
            label_bounds = self.response_model.label_bounds(self.h_star_constant)
        return self.loss_function.bounds(self.h_constant, label_bounds)

    @property
    def curvature_bounded(self) -> bool:
        """Whether the law ν of ``g`` has bounded support: the condition for isolated eigenvalues."""
        return all(self.curvature_bounds)

    def curvature(self, y: np.ndarray, h: np.ndarray) -> np.ndarray:
        """``g = ℓ''`` at labels ``y`` (before the transform) and ``h = wᵀx``."""
        return self.loss_function.curvature(self.label_transform.apply(y, self.c), h)

    def embed(self, p: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The geometry in ``R^p``: the diagonal of ``C`` and the vectors ``μ, w*, w``.

        Raises
        ------
        ValueError
            If ``p`` leaves a covariance block fewer than two coordinates.
        """
        sizes = self.covariance.block_sizes(p)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        diagonal = np.repeat(np.asarray(self.covariance.eigenvalues), sizes)
        vectors = {}
        for name, coefficients in self.coefficients.items():
            vector = np.zeros(p)
            vector[starts] = coefficients[:, 0]
            vector[starts + 1] = coefficients[:, 1]
            vectors[name] = vector
        return diagonal, vectors

    def replace(self, **changes: Any) -> Scenario:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The normalised fields, as plain Python values (the sweep-file form)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
