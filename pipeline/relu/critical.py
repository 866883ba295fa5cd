"""Critical points of the shallow ReLU loss: descent, Newton polishing, classification, random-start surveys.

:func:`find_critical_point` descends from a start with scipy's ``minimize`` on the exact gradient
(and, in a fixed space, the exact Hessian), then takes Newton steps with the exact Hessian until
the gradient is at rounding level.  Restricted to the fixed space of an isotropy group ``H`` it
minimises ``L`` over the ``W`` that ``H`` fixes; since ``L`` is invariant, its gradient at such a
``W`` lies in the fixed space, so a critical point of the restriction is a critical point of ``L``
(a minimum of the restriction may be a saddle of ``L``: :func:`classify` tells).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

from pipeline.errors import ScenarioError
from pipeline.relu.kernel import _matrix, _Pairs, check_pair, gradient, hessian, loss
from pipeline.relu.symmetry import ISOTROPY_TOLERANCE, FixedSpace, Isotropy, isotropy

__all__ = [
    "Classification",
    "CriticalPoint",
    "SurveyResult",
    "classify",
    "find_critical_point",
    "random_start",
    "survey",
]

# Newton polishing stops at this gradient norm (Frobenius).  The gradient's rounding floor is
# about k·ε per entry (sums of k terms of size ~1), √(kd)·k·ε ≈ 1e-13 in norm at k = d = 20.
GRADIENT_TOLERANCE = 1e-12
# Eigenvalues within ±(this × max|λ|) of 0 count as zero, not as negative: the eigensolver moves
# them by kd·ε·‖H‖ ≈ 1e-13‖H‖ at kd = 400, and a point off the critical point by |δW| ≈ |∇L|/λ_min
# moves them by |∇³L||δW| ≲ 1e-9 at the gradient tolerance; the smallest eigenvalue of a spurious
# minimum here (5e-3 at k = 6, ‖H‖ ≈ 2) is ~1e5 times larger.
EIGENVALUE_TOLERANCE = 1e-8
# A loss below this fraction of ½Σ_ij f(v_i, v_j) (the loss scale, ½E[(1ᵀrelu(Vx))²]) is the global
# minimum's 0: the three sums of L cancel to about k²ε of that scale, and the spurious minima
# here have loss ≥ 1e-3 of it.
LOSS_TOLERANCE = 1e-10
# Newton steps after the descent: quadratic convergence needs 3–5 from the descent's gradient
# (1e-6 – 1e-8); more only when the descent stopped far from a critical point.
_NEWTON_STEPS = 30
# The descent's stopping rules: scipy's gtol (max-norm of the gradient) and its relative decrease
# of the loss; Newton takes over from there.
_DESCENT_GTOL = 1e-9
_DESCENT_FTOL = 1e-15
_DESCENT_ITERATIONS = 20000


@dataclass(frozen=True, eq=False)
class CriticalPoint:
    """A point found by :func:`find_critical_point`.

    Attributes
    ----------
    W : numpy.ndarray
        The point, ``k × d``.
    loss : float
        ``L(W)``.
    gradient_norm : float
        Frobenius norm of the full gradient at ``W`` (not only its fixed-space part).
    converged : bool
        ``gradient_norm ≤ gtol``.
    iterations : int
        Descent iterations plus Newton steps.
    newton_steps : int
        Newton steps taken (accepted).
    fixed_space : str or None
        Name of the fixed space searched, ``None`` for the whole space.
    message : str
        The descent's message and why the polishing stopped.
    """

    W: np.ndarray
    loss: float
    gradient_norm: float
    converged: bool
    iterations: int
    newton_steps: int
    fixed_space: str | None
    message: str


@dataclass(frozen=True, eq=False)
class Classification:
    """The type of a critical point from its loss and Hessian.

    Attributes
    ----------
    kind : str
        ``"global minimum"`` (loss within the loss tolerance of 0), ``"spurious minimum"``
        (positive loss, no negative eigenvalue), ``"saddle"`` (a negative eigenvalue).
    index : int
        Number of eigenvalues below ``−tolerance``.
    nullity : int
        Number of eigenvalues within ``±tolerance`` (a continuous symmetry, e.g. rotations of the
        ``d − k`` extra inputs at a point that uses them, or a degenerate point).
    eigenvalues : numpy.ndarray
        All ``kd`` Hessian eigenvalues, ascending.
    tolerance : float
        The eigenvalue tolerance used: ``EIGENVALUE_TOLERANCE × max|λ|``.
    loss : float
        ``L(W)``.
    """

    kind: str
    index: int
    nullity: int
    eigenvalues: np.ndarray
    tolerance: float
    loss: float


def _loss_scale(V: np.ndarray) -> float:
    """``½ Σ_ij f(v_i, v_j)``: the loss of a student that outputs 0."""
    return float(0.5 * _Pairs.of(V, V).kernel().sum())


def classify(
    W: np.ndarray, V: np.ndarray, *, eigenvalue_tolerance: float = EIGENVALUE_TOLERANCE
) -> Classification:
    """Classify a critical point by its loss and the signs of its Hessian's eigenvalues.

    Parameters
    ----------
    W, V : array_like
        The point and the teacher, ``k × d``.  ``W`` should be a critical point (the gradient is
        not checked: see :attr:`CriticalPoint.converged`).
    eigenvalue_tolerance : float, default EIGENVALUE_TOLERANCE
        Relative to ``max|λ|``: eigenvalues below ``−tolerance`` are negative, those within
        ``±tolerance`` zero.

    Returns
    -------
    Classification

    Raises
    ------
    ScenarioError
        Bad ``W`` or ``V`` (see :func:`~pipeline.relu.kernel.check_pair`), or a bad tolerance.

    Examples
    --------
    >>> import numpy as np
    >>> c = classify(np.eye(3), np.eye(3))
    >>> c.kind, c.index, c.nullity
    ('global minimum', 0, 0)
    """
    W, V = check_pair(W, V)
    if not (eigenvalue_tolerance >= 0.0 and math.isfinite(eigenvalue_tolerance)):
        reason = f"must be a finite number ≥ 0, not {eigenvalue_tolerance!r}"
        raise ScenarioError("eigenvalue_tolerance", reason)
    values = np.linalg.eigvalsh(hessian(W, V))
    tolerance = eigenvalue_tolerance * float(np.abs(values).max())
    index = int(np.count_nonzero(values < -tolerance))
    nullity = int(np.count_nonzero(np.abs(values) <= tolerance))
    value = loss(W, V)
    if index > 0:
        kind = "saddle"
    elif abs(value) <= LOSS_TOLERANCE * _loss_scale(V):
        kind = "global minimum"
    else:
        kind = "spurious minimum"
    return Classification(kind, index, nullity, values, tolerance, value)


class _Objective:
    """``L`` with its gradient and Hessian, in the coordinates of a fixed space or of ``W.ravel()``."""

    def __init__(self, V: np.ndarray, shape: tuple[int, int], space: FixedSpace | None) -> None:
        self.V = V
        self.shape = shape
        self.basis = None if space is None else space.basis

    def matrix(self, x: np.ndarray) -> np.ndarray:
        flat = x if self.basis is None else x @ self.basis
        return flat.reshape(self.shape)

    def coordinates(self, W: np.ndarray) -> np.ndarray:
        return W.ravel().copy() if self.basis is None else self.basis @ W.ravel()

    def value_and_gradient(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        W = self.matrix(x)
        g = gradient(W, self.V).ravel()
        return loss(W, self.V), (g if self.basis is None else self.basis @ g)

    def gradient(self, x: np.ndarray) -> np.ndarray:
        return self.value_and_gradient(x)[1]

    def hessian(self, x: np.ndarray) -> np.ndarray:
        H = hessian(self.matrix(x), self.V)
        return H if self.basis is None else self.basis @ H @ self.basis.T


def _newton(objective: _Objective, x: np.ndarray, gtol: float, steps: int) -> tuple[np.ndarray, int, str]:
    """Newton steps ``H δ = −g`` (least squares: ``H`` is singular along continuous symmetries).

    A step is kept only if it lowers the full gradient's norm: near rounding level a step no
    longer helps, and far from a critical point an unchecked Newton step can jump anywhere.
    """
    W = objective.matrix(x)
    norm = float(np.linalg.norm(gradient(W, objective.V)))
    taken = 0
    for _ in range(steps):
        if norm <= gtol:
            return x, taken, f"gradient norm {norm:.2e} ≤ {gtol:.0e}"
        try:
            step = np.linalg.lstsq(objective.hessian(x), objective.gradient(x), rcond=None)[0]
            trial = x - step
            trial_norm = float(np.linalg.norm(gradient(objective.matrix(trial), objective.V)))
        except ScenarioError:
            return x, taken, "a Newton step reached a zero row"
        if not trial_norm < norm:
            return x, taken, f"Newton stalled at gradient norm {norm:.2e}"
        x, norm, taken = trial, trial_norm, taken + 1
    if norm <= gtol:
        return x, taken, f"gradient norm {norm:.2e} ≤ {gtol:.0e}"
    return x, taken, f"{steps} Newton steps left gradient norm {norm:.2e}"


def find_critical_point(
    W0: np.ndarray,
    V: np.ndarray,
    *,
    fixed_space: FixedSpace | None = None,
    method: str | None = None,
    gtol: float = GRADIENT_TOLERANCE,
    max_iterations: int = _DESCENT_ITERATIONS,
    newton_steps: int = _NEWTON_STEPS,
) -> CriticalPoint:
    """Descend from ``W0`` to a critical point of ``L``, then polish it with Newton steps.

    Parameters
    ----------
    W0, V : array_like
        Start and teacher, ``k × d``, ``d ≥ k``.
    fixed_space : FixedSpace, optional
        Search only the ``W`` fixed by an isotropy group (see
        :func:`~pipeline.relu.symmetry.fixed_space`); ``W0`` is projected on it first.  The point
        found is a critical point of ``L`` itself.
    method : str, optional
        scipy ``minimize`` method.  Default ``"trust-exact"`` (exact Hessian, cheap in a fixed space
        of a few dimensions) in a fixed space, ``"L-BFGS-B"`` in the whole space.
    gtol : float, default GRADIENT_TOLERANCE
        Gradient norm (Frobenius, full gradient) at which the polishing stops and the point counts
        as converged.
    max_iterations : int
        Cap on the descent's iterations.
    newton_steps : int
        Cap on the Newton steps.

    Returns
    -------
    CriticalPoint
        ``converged`` is ``False`` (and ``message`` says why) when the gradient norm stays above
        ``gtol``: a descent that stalled, a point where Newton steps do not help.

    Raises
    ------
    ScenarioError
        Bad ``W0`` or ``V`` (named ``"W"``/``"V"``), a fixed space of another shape
        (``"fixed_space"``), a bad ``gtol`` or iteration cap.

    Examples
    --------
    The type-A spurious minimum at ``k = 6`` (Safran & Shamir's loss ≈ 0.025):

    >>> from pipeline.relu.symmetry import fixed_space, flip_start, standard_teacher
    >>> point = find_critical_point(flip_start([5, 1]), standard_teacher(6), fixed_space=fixed_space([5, 1]))
    >>> point.converged, round(point.loss, 5)
    (True, 0.02508)
    """
    W0, V = check_pair(W0, V)
    if fixed_space is not None and fixed_space.labels.shape != W0.shape:
        reason = f"is for shape {fixed_space.labels.shape}, W0 has shape {W0.shape}"
        raise ScenarioError("fixed_space", reason)
    if not (gtol > 0.0 and math.isfinite(gtol)):
        raise ScenarioError("gtol", f"must be a finite number > 0, not {gtol!r}")
    for name, cap in (("max_iterations", max_iterations), ("newton_steps", newton_steps)):
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
            raise ScenarioError(name, f"must be an integer ≥ 0, not {cap!r}")
    objective = _Objective(V, W0.shape, fixed_space)
    x0 = objective.coordinates(W0)
    check_pair(objective.matrix(x0), V)
    if method is None:
        method = "L-BFGS-B" if fixed_space is None else "trust-exact"
    options: dict[str, Any] = {"maxiter": max_iterations, "gtol": _DESCENT_GTOL}
    if method == "L-BFGS-B":
        options["ftol"] = _DESCENT_FTOL
    hess = objective.hessian if method in ("trust-exact", "trust-krylov", "trust-ncg", "Newton-CG") else None
    try:
        result = minimize(
            objective.value_and_gradient, x0, jac=True, hess=hess, method=method, options=options
        )
        x, descent, message = result.x, int(result.nit), str(result.message)
    except ScenarioError as error:
        # The descent passed through a zero row (a neuron that died): not a critical point.
        x, descent, message = x0, 0, f"descent stopped: {error}"
    x, steps, polish = _newton(objective, x, gtol, newton_steps)
    W = objective.matrix(x)
    norm = float(np.linalg.norm(gradient(W, V)))
    return CriticalPoint(
        W=W,
        loss=loss(W, V),
        gradient_norm=norm,
        converged=norm <= gtol,
        iterations=descent + steps,
        newton_steps=steps,
        fixed_space=None if fixed_space is None else fixed_space.name,
        message=f"{message}; {polish}",
    )


def random_start(k: int, d: int, seed: int | Sequence[int]) -> np.ndarray:
    """A random start: i.i.d. ``N(0, 1/d)`` entries (rows of norm ≈ 1, Xavier's scale).

    Keyed: ``default_rng(SeedSequence(seed))``; the same ``(k, d, seed)`` gives the same matrix.

    Examples
    --------
    >>> random_start(3, 4, seed=(1, 2)).shape
    (3, 4)
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ScenarioError("k", f"must be an integer ≥ 1, not {k!r}")
    if isinstance(d, bool) or not isinstance(d, int) or d < k:
        raise ScenarioError("d", f"must be an integer ≥ k = {k}, not {d!r}")
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    return rng.standard_normal((k, d)) / math.sqrt(d)


@dataclass(frozen=True, eq=False)
class SurveyResult:
    """Critical points found from random starts, each classified and with its isotropy.

    Attributes
    ----------
    points : tuple of CriticalPoint
    classifications : tuple of Classification
    isotropies : tuple of Isotropy
    """

    points: tuple[CriticalPoint, ...]
    classifications: tuple[Classification, ...]
    isotropies: tuple[Isotropy, ...]

    def counts(self) -> Counter[tuple[str, str]]:
        """How many starts ended at each ``(kind, isotropy name)``; kind ``"not converged"`` apart."""
        return Counter(
            (c.kind if p.converged else "not converged", s.name)
            for p, c, s in zip(self.points, self.classifications, self.isotropies, strict=True)
        )


def survey(V: np.ndarray, starts: int, seed: int, *, atol: float = ISOTROPY_TOLERANCE) -> SurveyResult:
    """Descend from random starts (:func:`random_start`, keys ``(seed, i)``); classify each end point.

    Parameters
    ----------
    V : array_like
        Teacher, ``k × d``.
    starts : int
        Number of starts.
    seed : int
        Key of the survey; start ``i`` uses ``(seed, i)``.
    atol : float, default ISOTROPY_TOLERANCE
        Passed to :func:`~pipeline.relu.symmetry.isotropy`.

    Returns
    -------
    SurveyResult
    """
    V = _matrix("V", V)
    k, d = V.shape
    if d < k:
        raise ScenarioError("V", f"has d = {d} < k = {k} columns: the model needs d ≥ k")
    if isinstance(starts, bool) or not isinstance(starts, int) or starts < 1:
        raise ScenarioError("starts", f"must be an integer ≥ 1, not {starts!r}")
    points, kinds, groups = [], [], []
    for i in range(starts):
        point = find_critical_point(random_start(k, d, (seed, i)), V)
        points.append(point)
        kinds.append(classify(point.W, V))
        groups.append(isotropy(point.W, atol=atol))
    return SurveyResult(tuple(points), tuple(kinds), tuple(groups))
