"""Critical points of the tanh network by the protocol of Pennington & Bahri (Sec. 6.4): energy and index.

One run (:func:`find_critical_point`) is keyed by a seed and does, in order:

1. **Draw** (:func:`draw_problem`): inputs ``X`` and targets ``Y`` (``n × m``, ``m = round(2n/φ)``),
   i.i.d. N(0, 1); a start ``θ₀`` with i.i.d. ``N(0, s²/n)`` entries (``s = init_scale``, default 1:
   unit-variance pre-activations, tanh neither linear nor saturated; the start's energy is
   ``≈ ½(1 + s²E[tanh²]) ≈ 0.7``); a level ``ℓ = U·L(θ₀)``, ``U ~ Uniform[0, 1)``.
2. **Descent on L** by scipy's L-BFGS-B (the paper's plain gradient descent; L-BFGS is its fair
   substitute) until ``L ≤ ℓ``.  The step that crosses ``ℓ`` is cut back by bisection to the point on
   it where ``L`` is within rounding of ``ℓ``: the search for a critical point starts *at* the drawn
   level, not wherever a long quasi-Newton step lands.  A level below the reachable minimum is never
   met: the descent then stops at ``J ≤ tolerance`` or after ``max_descent_iterations`` (the loss of
   this network keeps falling, slowly, as units saturate; the cap stops that drift).
3. **Minimisation of J = ‖∇L‖²** with its exact gradient ``∇J = 2H∇L`` (one Hessian-vector
   product, no Hessian) by L-BFGS-B, until ``J ≤ tolerance``.  ``J``'s curvature is ``≈ 2H²``, so its
   condition number is the square of ``H``'s, and plain L-BFGS needs 10⁴–2·10⁴ iterations at a saddle
   (7 of 18 runs at n = 16 did not reach 10⁻⁶ in 2·10⁴).  It is therefore run in cycles of
   :data:`CYCLE_ITERATIONS`, each in the coordinates ``θ = θ_k + T u`` with
   ``T = U (μ max λ²)^{1/2} (Λ² + μ max λ²)^{-1/2}`` from the eigendecomposition ``H(θ_k) = UΛUᵀ``
   (a Gauss–Newton, or Levenberg–Marquardt, preconditioner of ``J``, damping
   :data:`PRECONDITIONER_DAMPING` ``= μ``, raised ×100 after a cycle that stalls): all 18 of those runs
   reached ``J ≤ 10⁻⁶``, in 3–5·10³ iterations at a saddle.  It is still a minimisation of ``J`` along
   its exact gradient, only in rescaled coordinates; ``precondition=False`` runs the plain one.
4. **Spectrum** of the exact Hessian at the end point: the energy ``ε = L/n``, the index
   ``α`` = fraction of eigenvalues below ``−zero_tolerance·max|λ|`` (see :data:`ZERO_TOLERANCE`).

The paper discards runs with ``J > 10⁻⁶`` (:data:`CONVERGENCE_TOLERANCE`); here they are returned
with ``converged=False``.  The generator of each part is ``default_rng(SeedSequence(entropy,
spawn_key=key + (i,)))`` for part ``i`` (0: data, 1: start, 2: level) of the seed's own key, so the
parts do not depend on each other's consumption; the same seed gives a bit-identical run with BLAS
on one thread (the eigensolver and the BLAS products are not bit-reproducible across thread counts).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import OptimizeResult, minimize

from pipeline.errors import ScenarioError
from pipeline.pbnet.network import _forward, _hessian_vector_product, hessian, loss_and_gradient

__all__ = [
    "CONVERGENCE_TOLERANCE",
    "CYCLE_ITERATIONS",
    "PRECONDITIONER_DAMPING",
    "ZERO_TOLERANCE",
    "NetworkCriticalPoint",
    "NetworkProblem",
    "draw_problem",
    "find_critical_point",
    "negative_fraction",
    "survey",
]

SeedLike = int | Sequence[int] | np.random.SeedSequence

# The paper's threshold on J = ‖∇L‖² for a critical point (Sec. 6.4).
CONVERGENCE_TOLERANCE = 1e-6
# An eigenvalue counts as negative below −ZERO_TOLERANCE·max|λ|, as zero within ±.  The eigensolver's
# own error (P·ε·max|λ| ≈ 1e-13·max|λ|) is far below; what limits the index is the search: a point with
# J ≤ 1e-6 is not the critical point, and pushing J on to 1e-10 moved the index by up to 5 eigenvalues
# of 512 (4 of 72 at n = 6; 20 runs), whatever the tolerance.  1e-6 is the largest tolerance that
# left every saddle's count unchanged (8 runs at n = 16, φ = 1/4: the counts at 1e-9, 1e-7 and 1e-6
# agree; at 1e-5 three lose one, at 1e-4 up to twelve go).  It also drops the tiny negative
# eigenvalues (1e-9–1e-6·max|λ|) of near-minimisers at large weights, which vanish as J falls;
# a few of size 1e-6–1e-5 remain counted (one eigenvalue, α = 1/2n²).  The benchmark reports how
# many runs change index at ZERO_TOLERANCE/10 and ×10.
ZERO_TOLERANCE = 1e-6
# Levenberg–Marquardt damping μ of the preconditioner (relative to max λ²): directions with
# |λ| < √μ·max|λ| ≈ 3e-4·max|λ| are stretched no more than the softest.  Measured on 6 saddles at
# n = 16 (before the transform was normalised, see _minimise_j): 1e-8 needed fewer iterations than 1e-7
# but stalled in 1 run, 1e-9 in 2, 1e-10 in all (the line search fails once the stretched directions
# leave the region where the quadratic model of J holds); 1e-7 in none of 18 at φ ∈ {1/16, 1/4, 2/3}.
PRECONDITIONER_DAMPING = 1e-7
# L-BFGS iterations per preconditioner: one eigendecomposition (~0.1 s at P = 512) per cycle costs
# about 200 iterations.  At μ = 1e-8, 200 per cycle took half the iterations of 500 but 3× more
# eigendecompositions and stalled once; 1000 took twice the iterations.
CYCLE_ITERATIONS = 500
# Caps: the descent on L (a level below the minimum is never met; the loss drifts down slowly as units
# saturate, and the descent reached J ≤ 1e-6 after 1000–1200 iterations in the runs seen) and the
# minimisation of J (a saddle needs 3–6·10³ iterations, see above).
MAX_DESCENT_ITERATIONS = 2000
MAX_J_ITERATIONS = 20000
# L-BFGS memory (scipy's default).  Plain L-BFGS on J, 6 saddles at n = 16: with 5, none reached
# J ≤ 1e-6 in 2·10⁴ iterations; with 10, three; 20 and 50 no faster per unit of time.
_LBFGS_MEMORY = 10
# Bisection steps on the step that crosses the level: 2^-60 of a step is below rounding.
_BISECTION_STEPS = 60
# A cycle of the J minimisation that lowers J by less than this factor counts as a stall.  Each stall
# multiplies the preconditioner's damping by _DAMPING_GROWTH for the next cycle (1e-7 → 1e-5 → 1e-3:
# from Gauss–Newton towards plain descent); one more stall than _STALLS stops the search
# (converged=False).
_STALL_FACTOR = 1.0 - 1e-3
_DAMPING_GROWTH = 100.0
_STALLS = 2


@dataclass(frozen=True, eq=False)
class NetworkProblem:
    """The random part of one run: data, start and level (the arrays are read-only).

    Attributes
    ----------
    phi : float
        Parameters / data ratio ``2n²/(nm) = 2n/m`` asked for (``m`` is rounded).
    n : int
        Width (``n₀ = n₁ = n₂``).
    m : int
        Number of samples, ``round(2n/φ)``.
    X, Y : numpy.ndarray
        Inputs and targets, ``n × m``, i.i.d. N(0, 1).
    theta0 : numpy.ndarray
        The start, ``2n²`` i.i.d. ``N(0, init_scale²/n)`` entries.
    level : float
        The loss level ``U·L(θ₀)`` at which the descent hands over to the minimisation of ``J``.
    """

    phi: float
    n: int
    m: int
    X: np.ndarray
    Y: np.ndarray
    theta0: np.ndarray
    level: float


@dataclass(frozen=True, eq=False)
class NetworkCriticalPoint:
    """A point found by :func:`find_critical_point`, with its energy and Hessian spectrum (arrays read-only).

    Attributes
    ----------
    phi : float
        The ratio asked for.
    n, m : int
        Width and number of samples.
    seed : tuple of int
        The seed's entropy and spawn key, flattened (enough to redraw the run).
    theta : numpy.ndarray
        The end point, ``[W₁.ravel(), W₂.ravel()]``.
    energy : float
        ``ε = L/n`` at the end point.
    index : float
        ``α``: fraction of the ``2n²`` Hessian eigenvalues below ``−zero_threshold``.
    negative, nullity : int
        Eigenvalues below ``−zero_threshold``; within ``±zero_threshold``.
    gradient_norm_sq : float
        ``J = ‖∇L‖²`` at the end point.
    converged : bool
        ``J ≤ tolerance`` (the paper's 10⁻⁶ by default); runs with ``False`` are the ones the
        paper discards.
    eigenvalues : numpy.ndarray
        All Hessian eigenvalues, ascending.
    zero_threshold : float
        ``zero_tolerance·max|λ|``, the absolute threshold used for ``index``.
    level : float
        The level drawn, as an energy (``ℓ/n``).
    initial_energy : float
        Energy of the start ``θ₀``.
    start_energy : float
        Energy where the minimisation of ``J`` started (``level``, or above it when the descent was
        capped before reaching it).
    descent_iterations, j_iterations, cycles : int
        L-BFGS iterations on ``L``, on ``J`` (all cycles), and preconditioner cycles.
    weight_norm : float
        ``‖θ‖`` at the end point (large when units saturate).
    message : str
        How the descent and the minimisation of ``J`` ended.
    """

    phi: float
    n: int
    m: int
    seed: tuple[int, ...]
    theta: np.ndarray = field(repr=False)
    energy: float
    index: float
    negative: int
    nullity: int
    gradient_norm_sq: float
    converged: bool
    eigenvalues: np.ndarray = field(repr=False)
    zero_threshold: float
    level: float
    initial_energy: float
    start_energy: float
    descent_iterations: int
    j_iterations: int
    cycles: int
    weight_norm: float
    message: str

    @property
    def iterations(self) -> int:
        """All L-BFGS iterations of the run (descent and minimisation of ``J``)."""
        return self.descent_iterations + self.j_iterations


def _positive_int(name: str, value: object, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < least:
        raise ScenarioError(name, f"must be an integer ≥ {least}, not {value!r}")
    return int(value)


def _positive_float(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not (math.isfinite(float(value)) and float(value) > 0.0)
    ):
        raise ScenarioError(name, f"must be a finite number > 0, not {value!r}")
    return float(value)


def _seed_sequence(seed: SeedLike) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if seed is None:
        # SeedSequence(None) draws fresh entropy from the OS: the run would not be keyed.
        raise ScenarioError("seed", "must be an int ≥ 0 or a sequence of them, not None")
    try:
        return np.random.SeedSequence(seed)
    except (TypeError, ValueError) as error:
        raise ScenarioError("seed", f"must be an int ≥ 0 or a sequence of them: {error}") from None


def _seed_key(sequence: np.random.SeedSequence) -> tuple[int, ...]:
    entropy = sequence.entropy
    if entropy is None:  # a SeedSequence() given without entropy: it has none to record
        raise ScenarioError("seed", "is a SeedSequence without entropy")
    head = tuple(int(e) for e in entropy) if isinstance(entropy, Sequence) else (int(entropy),)
    return head + tuple(int(k) for k in sequence.spawn_key)


def _child(sequence: np.random.SeedSequence, part: int) -> np.random.Generator:
    """The generator of one part of a run, independent of how much the others draw."""
    key = np.random.SeedSequence(sequence.entropy, spawn_key=(*sequence.spawn_key, part))
    return np.random.default_rng(key)


def draw_problem(phi: float, seed: SeedLike, *, n: int = 16, init_scale: float = 1.0) -> NetworkProblem:
    """Draw the data, the start and the level of one run.

    Parameters
    ----------
    phi : float
        Ratio of parameters to data, ``φ = 2n/m`` (``m = round(2n/φ) ≥ 1``).
    seed : int, sequence of int or numpy.random.SeedSequence
        Key of the run, e.g. ``(sweep_seed, i_phi, trial)``.
    n : int, default 16
        Width of the square network (``2n²`` parameters).
    init_scale : float, default 1
        The start's entries are i.i.d. ``N(0, init_scale²/n)``.

    Returns
    -------
    NetworkProblem

    Raises
    ------
    ScenarioError
        Naming ``"phi"``, ``"n"``, ``"init_scale"`` or ``"seed"``.

    Examples
    --------
    >>> p = draw_problem(0.25, seed=(0, 1), n=4)
    >>> p.m, p.X.shape, p.theta0.shape, 0 <= p.level
    (32, (4, 32), (32,), True)
    """
    phi = _positive_float("phi", phi)
    n = _positive_int("n", n)
    init_scale = _positive_float("init_scale", init_scale)
    m = round(2 * n / phi)
    if m < 1:
        raise ScenarioError("phi", f"= {phi} gives m = round(2n/φ) = {m} samples at n = {n}: needs m ≥ 1")
    sequence = _seed_sequence(seed)
    data = _child(sequence, 0)
    X = data.standard_normal((n, m))
    Y = data.standard_normal((n, m))
    theta0 = _child(sequence, 1).standard_normal(2 * n * n) * (init_scale / math.sqrt(n))
    level = float(_child(sequence, 2).random()) * _forward(theta0, X, Y).loss
    for array in (X, Y, theta0):
        array.setflags(write=False)
    return NetworkProblem(phi, n, m, X, Y, theta0, level)


def negative_fraction(eigenvalues: np.ndarray, *, zero_tolerance: float = ZERO_TOLERANCE) -> float:
    """The index ``α``: fraction of eigenvalues below ``−zero_tolerance·max|λ|``.

    Parameters
    ----------
    eigenvalues : array_like
        A Hessian's eigenvalues (any order).
    zero_tolerance : float, default ZERO_TOLERANCE
        Relative to ``max|λ|``; eigenvalues within ``±`` it count as zero.

    Returns
    -------
    float

    Examples
    --------
    >>> negative_fraction([-1.0, -1e-9, 0.5, 2.0])
    0.25
    """
    values = np.asarray(eigenvalues, dtype=float)
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)):
        raise ScenarioError("eigenvalues", "must be a non-empty 1-d array of finite numbers")
    if not (zero_tolerance >= 0.0 and math.isfinite(zero_tolerance)):
        raise ScenarioError("zero_tolerance", f"must be a finite number ≥ 0, not {zero_tolerance!r}")
    threshold = zero_tolerance * float(np.abs(values).max())
    return float(np.count_nonzero(values < -threshold)) / values.size


class _Objective:
    """``L``, ``J = ‖∇L‖²`` and ``∇J = 2H∇L`` on one data set, counting nothing."""

    def __init__(self, X: np.ndarray, Y: np.ndarray) -> None:
        self.X = X
        self.Y = Y

    def loss(self, theta: np.ndarray) -> float:
        return _forward(theta, self.X, self.Y).loss

    def loss_and_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        return loss_and_gradient(theta, self.X, self.Y)

    def j(self, theta: np.ndarray) -> float:
        g = _forward(theta, self.X, self.Y).gradient()
        return float(g @ g)

    def j_and_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        forward = _forward(theta, self.X, self.Y)
        g = forward.gradient()
        n1n0 = forward.W1.size
        Hg = _hessian_vector_product(
            forward, g[:n1n0].reshape(forward.W1.shape), g[n1n0:].reshape(forward.W2.shape)
        )
        return float(g @ g), 2.0 * Hg


class _LevelWatch:
    """L-BFGS callback on ``L``: counts iterations, keeps the last iterate above the level, stops below it.

    It also stops where ``J = ‖∇L‖² ≤ tolerance``: the descent has found a critical point by the
    paper's criterion itself (a level below the reachable minimum).
    """

    def __init__(self, objective: _Objective, theta0: np.ndarray, level: float, tolerance: float) -> None:
        self.objective = objective
        self.level = level
        self.tolerance = tolerance
        self.previous = theta0
        self.crossing: np.ndarray | None = None
        self.critical = False
        self.iterations = 0

    def __call__(self, intermediate_result: OptimizeResult) -> None:
        self.iterations += 1
        x = np.array(intermediate_result.x)
        if intermediate_result.fun <= self.level:
            self.crossing = x
            raise StopIteration
        self.previous = x
        if self.objective.j(x) <= self.tolerance:
            self.critical = True
            raise StopIteration


class _ToleranceWatch:
    """L-BFGS callback: counts iterations, stops at ``J ≤ tolerance``."""

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self.iterations = 0

    def __call__(self, intermediate_result: OptimizeResult) -> None:
        self.iterations += 1
        if intermediate_result.fun <= self.tolerance:
            raise StopIteration


def _descend(
    objective: _Objective, theta0: np.ndarray, level: float, tolerance: float, cap: int
) -> tuple[np.ndarray, int, str]:
    """L-BFGS on ``L`` until ``L ≤ level``; the crossing step is cut back to the level by bisection."""
    watch = _LevelWatch(objective, theta0, level, tolerance)
    options = {"maxiter": cap, "maxcor": _LBFGS_MEMORY, "ftol": 0.0, "gtol": 0.0}
    result = minimize(
        objective.loss_and_gradient, theta0, jac=True, method="L-BFGS-B", callback=watch, options=options
    )
    if watch.critical:
        return watch.previous, watch.iterations, "descent reached J ≤ tolerance above the level"
    if watch.crossing is None:
        return np.array(result.x), watch.iterations, f"descent did not reach the level: {result.message}"
    start = watch.previous
    step = watch.crossing - start
    low, high = 0.0, 1.0  # L(start + low·step) > level ≥ L(start + high·step)
    for _ in range(_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        if objective.loss(start + middle * step) > level:
            low = middle
        else:
            high = middle
    return start + high * step, watch.iterations, "descent reached the level"


def _minimise_j(
    objective: _Objective, theta: np.ndarray, tolerance: float, cap: int, precondition: bool
) -> tuple[np.ndarray, float, int, int, str]:
    """L-BFGS on ``J`` in preconditioned cycles (the module's step 3): θ, J, iterations, cycles, message."""
    value = objective.j(theta)
    iterations = cycles = stalls = 0
    while value > tolerance and iterations < cap:
        if precondition:
            eigenvalues, vectors = np.linalg.eigh(hessian(theta, objective.X, objective.Y))
            # After a stalled cycle the damping grows (Levenberg–Marquardt's rule): a stiffer, less
            # stretched preconditioner, closer to plain descent on J.
            relative = PRECONDITIONER_DAMPING * _DAMPING_GROWTH**stalls
            damping = relative * float(np.abs(eigenvalues).max()) ** 2
            # Scaled so that the softest direction keeps unit length: L-BFGS's first step has unit
            # length in u, and so at most in θ (unscaled, it was 1/√μ·max|λ| ≈ 3000/max|λ| along
            # the soft directions, too far for the line search to come back from).
            transform = vectors * np.sqrt(damping / (eigenvalues**2 + damping))
        else:
            transform = np.eye(theta.size)
        budget = min(CYCLE_ITERATIONS if precondition else cap, cap - iterations)
        cycles += 1
        base = theta
        watch = _ToleranceWatch(tolerance)

        def j_in_cycle(
            u: np.ndarray, base: np.ndarray = base, transform: np.ndarray = transform
        ) -> tuple[float, np.ndarray]:
            v, grad = objective.j_and_gradient(base + transform @ u)
            return v, transform.T @ grad

        options = {
            "maxiter": budget,
            "maxfun": 2 * budget + 20,
            "maxcor": _LBFGS_MEMORY,
            "ftol": 0.0,
            "gtol": 0.0,
        }
        result = minimize(
            j_in_cycle,
            np.zeros(theta.size),
            jac=True,
            method="L-BFGS-B",
            callback=watch,
            options=options,
        )
        iterations += watch.iterations
        theta = base + transform @ result.x
        previous, value = value, objective.j(theta)
        stalls = stalls + 1 if value > _STALL_FACTOR * previous else 0
        if stalls > _STALLS:
            return theta, value, iterations, cycles, f"J stalled at {value:.2e} ({result.message})"
    if value <= tolerance:
        return theta, value, iterations, cycles, f"J = {value:.2e} ≤ {tolerance:.0e}"
    return theta, value, iterations, cycles, f"J = {value:.2e} after {iterations} iterations (cap {cap})"


def find_critical_point(
    phi: float,
    seed: SeedLike,
    *,
    n: int = 16,
    init_scale: float = 1.0,
    tolerance: float = CONVERGENCE_TOLERANCE,
    zero_tolerance: float = ZERO_TOLERANCE,
    max_descent_iterations: int = MAX_DESCENT_ITERATIONS,
    max_j_iterations: int = MAX_J_ITERATIONS,
    precondition: bool = True,
) -> NetworkCriticalPoint:
    """One run of the paper's experiment: descend to a random level, then minimise ``‖∇L‖²``.

    See the module's docstring for the four steps.

    Parameters
    ----------
    phi : float
        Ratio of parameters to data, ``φ = 2n/m``.
    seed : int, sequence of int or numpy.random.SeedSequence
        Key of the run, e.g. ``(sweep_seed, i_phi, trial)``: it fixes the data, the start and the level.
    n : int, default 16
        Width of the square network (``2n²`` parameters; the paper's 16 gives 512).
    init_scale : float, default 1
        The start's entries are i.i.d. ``N(0, init_scale²/n)``.
    tolerance : float, default CONVERGENCE_TOLERANCE
        ``J`` at which the minimisation stops and the point counts as critical (the paper's 10⁻⁶).
    zero_tolerance : float, default ZERO_TOLERANCE
        Relative to ``max|λ|``: eigenvalues within ``±`` it are zero, not negative.
    max_descent_iterations, max_j_iterations : int
        Caps on the L-BFGS iterations on ``L`` and on ``J``.
    precondition : bool, default True
        Minimise ``J`` in preconditioned cycles (``False``: plain L-BFGS on ``J``, much slower at
        saddles; kept for comparison).

    Returns
    -------
    NetworkCriticalPoint
        ``converged`` is ``False`` when ``J`` stayed above ``tolerance`` (cap reached or stalled;
        ``message`` says which).

    Raises
    ------
    ScenarioError
        Naming the bad argument.

    See Also
    --------
    draw_problem : the random part of the run alone.
    survey : many runs over a grid of ``φ``.

    Examples
    --------
    >>> point = find_critical_point(0.5, seed=(0, 0), n=4)
    >>> point.converged, point.gradient_norm_sq <= 1e-6, 0.0 <= point.index <= 1.0, point.eigenvalues.size
    (True, True, True, 32)
    """
    problem = draw_problem(phi, seed, n=n, init_scale=init_scale)
    tolerance = _positive_float("tolerance", tolerance)
    if not (
        isinstance(zero_tolerance, numbers.Real) and math.isfinite(zero_tolerance) and zero_tolerance >= 0
    ):
        raise ScenarioError("zero_tolerance", f"must be a finite number ≥ 0, not {zero_tolerance!r}")
    max_descent_iterations = _positive_int("max_descent_iterations", max_descent_iterations, least=0)
    max_j_iterations = _positive_int("max_j_iterations", max_j_iterations, least=0)
    objective = _Objective(problem.X, problem.Y)
    if max_descent_iterations > 0:
        theta, descent, descent_message = _descend(
            objective, problem.theta0, problem.level, tolerance, max_descent_iterations
        )
    else:
        theta, descent, descent_message = problem.theta0, 0, "no descent"
    start_energy = objective.loss(theta) / n
    theta, value, j_iterations, cycles, j_message = _minimise_j(
        objective, theta, tolerance, max_j_iterations, precondition
    )
    eigenvalues = np.linalg.eigvalsh(hessian(theta, problem.X, problem.Y))
    theta = np.array(theta)  # a copy of its own: the result's arrays are read-only
    for array in (theta, eigenvalues):
        array.setflags(write=False)
    threshold = float(zero_tolerance) * float(np.abs(eigenvalues).max())
    negative = int(np.count_nonzero(eigenvalues < -threshold))
    return NetworkCriticalPoint(
        phi=problem.phi,
        n=n,
        m=problem.m,
        seed=_seed_key(_seed_sequence(seed)),
        theta=theta,
        energy=objective.loss(theta) / n,
        index=negative / eigenvalues.size,
        negative=negative,
        nullity=int(np.count_nonzero(np.abs(eigenvalues) <= threshold)),
        gradient_norm_sq=value,
        converged=value <= tolerance,
        eigenvalues=eigenvalues,
        zero_threshold=threshold,
        level=problem.level / n,
        initial_energy=objective.loss(problem.theta0) / n,
        start_energy=start_energy,
        descent_iterations=descent,
        j_iterations=j_iterations,
        cycles=cycles,
        weight_norm=float(np.linalg.norm(theta)),
        message=f"{descent_message}; {j_message}",
    )


def survey(
    phis: Sequence[float], trials: int, seed: int, *, n: int = 16, **options: object
) -> tuple[NetworkCriticalPoint, ...]:
    """Runs of :func:`find_critical_point` over a grid of ``φ``, keyed ``(seed, i_phi, trial)``.

    Parameters
    ----------
    phis : sequence of float
        The ratios.
    trials : int
        Runs per ratio.
    seed : int
        Key of the survey.
    n : int, default 16
        Width.
    **options
        Passed to :func:`find_critical_point`.

    Returns
    -------
    tuple of NetworkCriticalPoint
        Ordered by ``φ``, then trial; the unconverged ones included.
    """
    trials = _positive_int("trials", trials)
    seed = _positive_int("seed", seed, least=0)
    return tuple(
        find_critical_point(phi, (seed, i_phi, trial), n=n, **options)  # type: ignore[arg-type]
        for i_phi, phi in enumerate(phis)
        for trial in range(trials)
    )
