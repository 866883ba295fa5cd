"""The limiting spectral measure: ``δ(z)``, the density, its support and its edges.

The fixed-point equation of ``shared/theory/glm.md`` (the paper's eq. 3), for ``ν̃ = Σ_j π_j δ_{t_j}``:

    Φ(δ, z) = δ − c Σ_j π_j t_j / (t_j F(δ) − z) = 0,     F(δ) = E[g / (1 + gδ)],
    m(z) = Σ_j π_j / (t_j F(δ(z)) − z),                 density(x) = Im m(x + i0) / π.

It is solved by Newton's method in ``δ``, vectorised over ``z``, with continuation in ``Im z``: from
``Im z`` of the order of the spectral scale, where the solution is close to ``−c Σ π t / z``, down to
``Im z = _ETA_FINAL × scale`` in steps of a factor ``_ETA_RATIO``.  A Newton step that would leave
the upper half-plane is cut back, so the iteration stays on the physical (Stieltjes) branch,
where ``Im δ > 0``.

Edges are where the real solution branches: ``Φ = 0`` and ``∂Φ/∂δ = 0`` with ``(δ, x)`` real, a
2 × 2 Newton system started from the grid's estimate (for ``C = I`` this is the paper's
``E[f²] = c/δ²``).  Isolated eigenvalues are not part of the density and are handled in
:mod:`pipeline.theory.spikes`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["BulkEquation", "Support", "cumulative_mass", "density_grid", "locate_support"]

# Im z at which the density is read, relative to the spectral scale: Im δ(x + iη) − Im δ(x + i0)
# is O(η/√distance-to-edge), so 1e-10 leaves the density exact to ~1e-7 at 1e-6 from an edge.
_ETA_FINAL = 1e-10
# The continuation starts where Im z dwarfs the spectrum (δ ≈ -c Σ π t / z there) and divides Im z
# by _ETA_RATIO per level; points that fail are redone with the finer _ETA_RATIO_FINE.
_ETA_START = 10.0
_ETA_RATIO = 10.0
_ETA_RATIO_FINE = 2.0
# Newton stops when a step is below _NEWTON_TOLERANCE |δ| (quadratic convergence: the iterate is
# then accurate to ~1e-16), or at a residual of rounding size.  Intermediate levels of the
# continuation only give starting points and stop at _LADDER_TOLERANCE.
_NEWTON_TOLERANCE = 1e-8
_RESIDUAL_TOLERANCE = 1e-14
_LADDER_TOLERANCE = 1e-3
_NEWTON_STEPS = 30
# In the support Im δ barely moves when η is divided by _PROBE_RATIO = 10; outside it is divided
# by 10.  The geometric mean √10 separates the two.
_PROBE_RATIO = 10.0
_STEADY_RATIO = np.sqrt(_PROBE_RATIO)
# An edge found within this distance (relative to the spectral scale) of a hard edge at 0 is it.
_HARD_EDGE_SNAP = 1e-2
# Where Newton's method on the edge equations fails, the edge is bracketed by _SEARCH_ROUNDS
# rounds of _SEARCH_POINTS support tests: 32³ ≈ 3e4 times narrower than a grid spacing.
_SEARCH_POINTS = 31
_SEARCH_ROUNDS = 3
# Largest relative change of δ between two coarse points for an interpolated Newton start.
_SMOOTH_VARIATION = 0.1
# Edge equations: step tolerance relative to the edge, iteration cap, and how far past the last
# grid point inside the support an edge may be found, in grid spacings.
_EDGE_TOLERANCE = 1e-13
_EDGE_STEPS = 60
_EDGE_SLACK = 0.5
# Where the edge equations fail between the compressed law's last points in and out of a bulk,
# the full law's edge may lie beyond the outside point (the compression moves an edge by ~1e-3 of
# the bulk's width, a few percent of a grid spacing): the full law's support test walks outward
# over at most this many grid points (a narrow gap may hold fewer; the next bulk stops the walk).
_OUTWARD_POINTS = 4

# Below this fraction of the peak density a point polished from the compressed law's δ is solved
# again by the full continuation on the full law (the compression error of δ is ~1e-3 to 1e-2).
_FAINT_DENSITY = 1e-2
# The full law's root δ is exact to the quadrature where the same quadrature shifted by half a
# step solves Φ there to this (relative to |δ|): where the atoms resolve the integrand, the two
# rules agree to rounding (their difference falls like exp(-2π d/h) for a pole at distance d from
# the values of g, node spacing h; measured below 1e-12 in the bulk of the one-dimensional laws,
# up to 1e-5 in the tails of two-dimensional ones, O(1) next to 0 at p > n).
_QUADRATURE_TOLERANCE = 1e-8
# The segment law's own error (O(h²): ~1e-4 of δ refined on a line of nodes, 1e-3 to 1e-2 on the
# unrefined plane of a two-dimensional law) is measured at up to this many points where the full
# law is exact; a point goes to the segment law only where the full law's error estimate is
# larger than the largest of these.
_ACCURACY_SAMPLE = 16
# A point whose density (estimated by the compressed law, to ~1e-2) is below this fraction of the
# peak is left to the full law even where its atoms fail, as _FAINT_DENSITY: at the faint end of
# the support next to the atom at 0 (the spectral loss at ‖w*‖ = 0.2, c = 1.5: below 4e-3 of the
# peak over 0.3 of the axis, 1e-4 of the mass), where the segment law would cost ten times the
# atoms per point.
_NEGLIGIBLE_DENSITY = 1e-2
# A root of Φ with Im z = η > 0 is on the physical branch only if Im δ ≥ c η Σ π t / |t F − z|²
# (Im F ≤ 0 whenever Im δ ≥ 0); this much below it is rounding, more is a root on a wrong sheet
# (the continuation can end on the cut of the pieces' atanh, with Im δ ~ 1e-60).
_BRANCH_SLACK = 1e-6

# The coarse support grid is refined where one panel holds more than _PANEL_MASS of the mass, each
# such panel cut into _PANEL_SPLITS, at most _REFINE_ROUNDS times.
_PANEL_MASS = 0.02
_PANEL_SPLITS = 8
_REFINE_ROUNDS = 4

# Below this |η| the series of C(η) converges to rounding in _SERIES_TERMS terms
# (remainder |η|^(2·_SERIES_TERMS) ≤ 1e-14); above it, the closed form through atanh.
_SERIES_RADIUS = 0.1
_SERIES_TERMS = 7


def _atanh_ratio_excess(eta: np.ndarray) -> np.ndarray:
    """``C(η) = (atanh(η)/η − 1)/η² = Σ_k η^{2k}/(2k + 3)``, without cancellation near 0."""
    # Most pieces are far from the pole -1/δ and take the series; the costly complex atanh runs
    # on the others only.  Horner's scheme in place: the arrays are (points × pieces).
    eta2 = eta * eta
    result = np.full_like(eta, 1.0 / (2 * _SERIES_TERMS + 1))
    for k in range(_SERIES_TERMS - 2, -1, -1):
        result *= eta2
        result += 1.0 / (2 * k + 3)
    large = np.abs(eta2) >= _SERIES_RADIUS**2
    if large.any():
        near = eta[large]
        result[large] = (np.arctanh(near) / near - 1.0) / (near * near)
    return result


def _piece_moments(
    delta: np.ndarray,
    centre: np.ndarray,
    width: np.ndarray,
    weight: np.ndarray,
    orders: int = 2,
    tilt: np.ndarray | None = None,
) -> list[np.ndarray]:
    """``E[g/(1+gδ)]`` and (``orders = 2``) ``E[g²/(1+gδ)²]`` for a mixture of uniform pieces.

    For ``g`` uniform on ``[m − w/2, m + w/2]``, with ``s = 1 + mδ`` and ``η = δw/(2s)``:
    ``E[1/(1+gδ)] = atanh(η)/(ηs)`` and ``E[1/(1+gδ)²] = 1/(s²(1 − η²))``, which give

        E[g/(1+gδ)]   = m/s − (w/(2s²)) η C(η),
        E[g²/(1+gδ)²] = m²/s² + (w²/(4s²)) (1/(s²(1 − η²)) − 2C(η)/s),

    with ``C(η) = (atanh(η)/η − 1)/η²``: written so that nothing cancels as ``δ → 0``.  The
    principal ``atanh`` is the right branch because for ``Im δ ≠ 0`` the segment ``1 + gδ`` never
    meets the negative real axis.

    With ``tilt`` θ the density of a piece is linear, ``∝ 1 + θτ`` at ``g = m + τw/2``, which adds
    ``θ (w/(2s²)) C(η)`` to ``E[g/(1+gδ)]`` (from ``E[τ(m + τw/2)/(1+ητ)] = (w/2 − mη) C(η)``
    over ``τ`` uniform on ``[−1, 1]``).  The second moment stays that of the uniform pieces: it
    only enters Newton's derivative, where an error of ``O(θ w²)`` (``1e-4`` for the segment law)
    turns quadratic convergence into a linear rate of that size, and saves a third of the work.
    """
    d = delta[..., None]
    inverse_s = np.multiply.outer(delta, centre)
    inverse_s += 1.0
    np.reciprocal(inverse_s, out=inverse_s)
    half_over_s = (0.5 * width) * inverse_s  # w/(2s)
    eta = d * half_over_s
    c_eta = _atanh_ratio_excess(eta)
    m_over_s = centre * inverse_s
    # first = m/s − (w/(2s)) (1/s) η C(η), in the buffers of η C(η).
    correction = eta * c_eta
    correction *= half_over_s
    correction *= inverse_s
    first = m_over_s - correction
    if tilt is not None:
        first += half_over_s * inverse_s * c_eta * tilt
    if orders == 1:
        return [first @ weight]
    # second = (m/s)² + (w/(2s))² (1/(s²(1 − η²)) − 2C(η)/s).
    eta *= eta
    np.subtract(1.0, eta, out=eta)
    inner = inverse_s * inverse_s
    inner /= eta
    c_eta *= inverse_s
    c_eta *= 2.0
    inner -= c_eta
    half_over_s *= half_over_s
    inner *= half_over_s
    m_over_s *= m_over_s
    inner += m_over_s
    return [first @ weight, inner @ weight]


@dataclass(frozen=True, eq=False)
class BulkEquation:
    """``Φ(δ, z) = 0`` for a covariance ``(t, π)`` and a discrete law of ``g``.

    Attributes
    ----------
    c : float
        ``p / n``.
    t, pi : numpy.ndarray
        Distinct eigenvalues of ``C`` and their fractions.
    g, weight : numpy.ndarray
        Atoms of the law ν of ``g`` (or centres of its uniform pieces) and their masses;
        mass at 0 is left out, it only enters through ``atom_zero``.
    width : numpy.ndarray
        Width of each piece (0 for an atom).
    atom_zero : float
        Mass of the limiting measure at 0, ``max(0, 1 - P(g ≠ 0)/c)``.
    tilt : numpy.ndarray or None
        The slope of each piece's density, in ``[−1, 1]`` (``None``: uniform pieces), see
        :func:`_piece_moments`.
    """

    c: float
    t: np.ndarray
    pi: np.ndarray
    g: np.ndarray
    weight: np.ndarray
    width: np.ndarray
    atom_zero: float
    tilt: np.ndarray | None = None
    _poles: np.ndarray = field(init=False, repr=False)
    # g^k × weight for k = 1, 2, 3: the weights of the atomic moments, real and (for complex δ, so
    # that a matrix product never converts them again) complex.
    _weighted: tuple[np.ndarray, ...] = field(init=False, repr=False)
    _weighted_complex: tuple[np.ndarray, ...] = field(init=False, repr=False)
    # The pieces' masses as complex numbers: a complex-by-real matrix product skips BLAS and runs
    # 100 times slower than a complex one.
    _weight_complex: np.ndarray = field(init=False, repr=False)

    @property
    def hard_edge(self) -> bool:
        """``c P(g ≠ 0) = 1``: no atom at 0, but the density diverges there."""
        return self.atom_zero == 0.0 and abs(self.c - float(self.weight.sum())) <= 1e-12 * self.c

    def __post_init__(self) -> None:
        ends = np.concatenate([self.g - 0.5 * self.width, self.g + 0.5 * self.width])
        object.__setattr__(self, "_poles", np.unique(-1.0 / ends[ends != 0]))
        weighted = tuple(self.g**k * self.weight for k in (1, 2, 3))
        object.__setattr__(self, "_weighted", weighted)
        object.__setattr__(self, "_weighted_complex", tuple(w.astype(complex) for w in weighted))
        object.__setattr__(self, "_weight_complex", self.weight.astype(complex))

    def same_branch(self, old: np.ndarray, new: np.ndarray) -> np.ndarray:
        """Whether real ``new`` lies between the same poles ``δ = -1/g_k`` of ``F`` as ``old``.

        On the real axis ``F`` has a pole at ``-1/g`` for every atom; a real solution outside
        the support stays in one interval between poles, so Newton steps may not cross one.
        """
        return np.searchsorted(self._poles, old) == np.searchsorted(self._poles, new)

    def outside_poles(self, delta: np.ndarray) -> np.ndarray:
        """Whether real ``δ`` lies outside the hull of the poles of each sign of ``g``.

        Between poles ``1 + gδ`` changes sign across the law of ``g``: no real ``δ`` there
        describes a point outside the support of the continuous law that ν discretises.
        """
        poles = self._poles
        negative, positive = poles[poles < 0], poles[poles > 0]
        ok = np.ones(np.shape(delta), dtype=bool)
        if negative.size:
            ok &= ~((delta > negative[0]) & (delta < negative[-1]))
        if positive.size:
            ok &= ~((delta > positive[0]) & (delta < positive[-1]))
        return ok

    def moments(self, delta: np.ndarray, orders: int) -> list[np.ndarray]:
        """``[E[g^k/(1+gδ)^k] for k = 1..orders]`` at each ``δ`` (``orders ≤ 2`` with pieces).

        With tilted pieces the second is that of uniform ones (see :func:`_piece_moments`).
        """
        if not self.width.any():
            # E[g^k (1+gδ)^-k] = Σ (g^k w) r^k with r = 1/(1+gδ): a reciprocal is about three
            # times cheaper than dividing g by a complex array, and the weights g^k w are fixed.
            # In place: the (points × atoms) arrays are large, and each fresh one costs page faults.
            inverse = np.multiply.outer(delta, self.g)
            inverse += 1.0
            np.reciprocal(inverse, out=inverse)
            weighted = self._weighted_complex if np.iscomplexobj(inverse) else self._weighted
            result = [inverse @ weighted[0]]
            if orders > 1:
                power = inverse.copy() if orders > 2 else inverse
                for k in range(1, orders):
                    power *= inverse
                    result.append(power @ weighted[k])
            return result
        if orders > 2:
            raise ValueError("third moments are only needed, and only given, for atomic laws")
        weight = self._weight_complex if np.iscomplexobj(delta) else self.weight
        return _piece_moments(delta, self.g, self.width, weight, orders, self.tilt)

    def residual(self, delta: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``Φ(δ, z)`` and ``∂Φ/∂δ``."""
        f1, f2 = self.moments(delta, 2)
        denominator = self.t * f1[..., None] - z[..., None]
        phi = delta - self.c * (self.pi * self.t / denominator).sum(-1)
        dphi = 1.0 - self.c * (self.pi * self.t**2 * f2[..., None] / denominator**2).sum(-1)
        return phi, dphi

    def physical(self, delta: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Whether each root ``δ`` at ``z`` (``Im z > 0``) can be on the physical branch.

        With ``Im δ ≥ 0``, ``Im F ≤ 0`` and so ``Im δ ≥ c Im z Σ π t / |t F − z|²``; a root on a
        wrong sheet of ``F`` (real ``δ`` on the cut of a piece's ``atanh``) breaks the bound by
        orders of magnitude.
        """
        return self.inspect(delta, z)[2]

    def inspect(self, delta: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`read` and :meth:`physical` from one evaluation of ``F(δ)``."""
        (f1,) = self.moments(delta, 1)
        denominator = self.t * f1[..., None] - z[..., None]
        phi = delta - self.c * (self.pi * self.t / denominator).sum(-1)
        bound = self.c * z.imag * (self.pi * self.t / np.abs(denominator) ** 2).sum(-1)
        physical = delta.imag >= (1.0 - _BRANCH_SLACK) * bound
        return phi, self._density_of((self.pi / denominator).sum(-1), z), physical

    def stieltjes(self, delta: np.ndarray, z: np.ndarray) -> np.ndarray:
        """``m(z)`` from ``δ(z)``."""
        (f1,) = self.moments(delta, 1)
        return (self.pi / (self.t * f1[..., None] - z[..., None])).sum(-1)

    def density(self, delta: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Density of the continuous part at ``Re z`` (the atom at 0 removed)."""
        return self._density_of(self.stieltjes(delta, z), z)

    def _density_of(self, m: np.ndarray, z: np.ndarray) -> np.ndarray:
        atom = self.atom_zero * z.imag / (z.real**2 + z.imag**2)
        return np.maximum((m.imag - atom) / np.pi, 0.0)

    def read(self, delta: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``Φ(δ, z)`` and the density at ``Re z`` from one evaluation of ``F(δ)``."""
        (f1,) = self.moments(delta, 1)
        denominator = self.t * f1[..., None] - z[..., None]
        phi = delta - self.c * (self.pi * self.t / denominator).sum(-1)
        return phi, self._density_of((self.pi / denominator).sum(-1), z)

    def newton(
        self, delta: np.ndarray, z: np.ndarray, tolerance: float = _NEWTON_TOLERANCE
    ) -> tuple[np.ndarray, np.ndarray]:
        """Newton's method from ``delta`` at fixed ``z``, keeping ``Im δ ≥ 0``.

        Iteration stops when a step is below ``tolerance`` relative to ``|δ|``: Newton converges
        quadratically, so the last iterate is then accurate to about ``tolerance²``.
        Returns the solution and a boolean array: converged.
        """
        delta = delta.astype(complex)
        active = np.ones(delta.shape, dtype=bool)
        for _ in range(_NEWTON_STEPS):
            current, point = delta[active], z[active]
            phi, dphi = self.residual(current, point)
            # Next to an edge ∂Φ/∂δ → 0 and the step is rounding noise magnified: a residual at
            # rounding level is converged whatever the step says.
            solved = np.abs(phi) <= _RESIDUAL_TOLERANCE * np.abs(current)
            candidate = np.where(solved, current, current - phi / dphi)
            # A step that leaves the upper half-plane is cut back to a tenth of the way to the
            # real axis: outside the support Im δ is O(η) and rounding alone overshoots it.
            wrong_side = candidate.imag < 0
            candidate[wrong_side] = candidate[wrong_side].real + 0.1j * current[wrong_side].imag
            delta[active] = candidate
            change = np.abs(candidate - current)
            settled = solved | (change <= tolerance * np.maximum(np.abs(candidate), 1e-300))
            settled |= ~np.isfinite(candidate)
            active[active] = ~settled
            if not active.any():
                break
        return delta, ~active & np.isfinite(delta)

    def solve(self, x: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """``δ(x + iη)`` at ``η = _ETA_FINAL × scale`` by continuation in ``η``.

        Steps of ``_ETA_RATIO``; points where that fails (next to a hard edge, where δ grows
        like ``|x|^{-1/2}``) are solved again with the finer ratio ``_ETA_RATIO_FINE``.
        """
        delta, converged = self._continue(x, scale, _ETA_RATIO)
        failed = ~converged
        if failed.any():
            delta[failed], converged[failed] = self._continue(x[failed], scale, _ETA_RATIO_FINE)
        return delta, converged

    def _continue(self, x: np.ndarray, scale: float, ratio: float) -> tuple[np.ndarray, np.ndarray]:
        eta = _ETA_START * scale
        z = x + 1j * eta
        f_mean = float(self.g @ self.weight)
        delta = self.c * (self.pi * self.t / (self.t * f_mean - z[:, None])).sum(-1)
        while eta > _ETA_FINAL * scale * 1.0000001:
            # Intermediate levels only provide starting points for the next one.
            delta, _ = self.newton(delta, x + 1j * eta, _LADDER_TOLERANCE)
            eta = max(eta / ratio, _ETA_FINAL * scale)
        return self.newton(delta, x + 1j * eta)

    def eta(self, scale: float) -> float:
        """The ``Im z`` at which :meth:`solve` reads the density."""
        return _ETA_FINAL * scale

    def _edge_system(self, delta: float, x: float) -> tuple[np.ndarray, np.ndarray]:
        """``(Φ, ∂Φ/∂δ)`` at real ``(δ, x)`` and their Jacobian in ``(δ, x)``."""
        f1, f2, f3 = (float(np.real(m)) for m in self.moments(np.array(delta), 3))
        d = self.t * f1 - x
        c, pi, t = self.c, self.pi, self.t
        # F' = -f2, F'' = 2 f3.
        values = np.array([delta - c * np.sum(pi * t / d), 1.0 - c * np.sum(pi * t**2 * f2 / d**2)])
        jacobian = np.array(
            [
                [values[1], -c * np.sum(pi * t / d**2)],
                [
                    c * np.sum(pi * t**2 * (2 * f3 / d**2 - 2 * t * f2**2 / d**3)),
                    -c * np.sum(pi * t**2 * f2 * 2 / d**3),
                ],
            ]
        )
        return values, jacobian

    def refine_edge(self, x_out: float, x_in: float, delta_out: float) -> tuple[float, float] | None:
        """The edge between ``x_out`` (outside the support) and ``x_in`` (inside), or ``None``.

        Returns the edge ``x`` and the real ``δ`` there (where spikes are born, see
        :func:`pipeline.theory.spikes.edge_determinant`).

        Solves ``Φ(δ, x) = 0, ∂Φ/∂δ = 0`` for real ``(δ, x)`` by Newton's method with
        backtracking on the residual, never crossing a pole of ``F`` (the real solution outside
        the support lives between two), and within a grid spacing of the bracket.
        """
        width = abs(x_in - x_out)
        # The edge is on the x_in side of x_out (the other edge of a narrow gap may be as close
        # on the far side), and not much beyond x_in: the support test used a compressed law.
        beyond = x_in + _EDGE_SLACK * (x_in - x_out)
        lo, hi = min(x_out, beyond), max(x_out, beyond)
        point = np.array([float(delta_out), float(x_out)])
        if not self.outside_poles(np.array(point[0])):
            return None
        values, jacobian = self._edge_system(*point)
        for _ in range(_EDGE_STEPS):
            try:
                step = np.linalg.solve(jacobian, values)
            except np.linalg.LinAlgError:
                return None
            if not np.all(np.isfinite(step)):
                return None
            accepted = self._backtrack(point, step, values, lo, hi)
            if accepted is None:
                return None
            moved = abs(accepted[0][1] - point[1])
            point, values, jacobian = accepted
            if moved <= _EDGE_TOLERANCE * max(abs(point[1]), width):
                return float(point[1]), float(point[0])
        return None

    def _backtrack(
        self, point: np.ndarray, step: np.ndarray, values: np.ndarray, lo: float, hi: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The longest fraction of a Newton step that stays in ``[lo, hi]`` and on the branch of
        ``δ`` and lowers the residual (any fraction down to 1e-6 once in the domain)."""
        fraction = 1.0
        for _ in range(40):
            trial = point - fraction * step
            if lo <= trial[1] <= hi and self.same_branch(np.array(point[0]), np.array(trial[0])):
                trial_values, trial_jacobian = self._edge_system(*trial)
                if np.linalg.norm(trial_values) < np.linalg.norm(values) or fraction < 1e-6:
                    return trial, trial_values, trial_jacobian
            fraction *= 0.5
        return None


@dataclass(frozen=True)
class Support:
    """Bulks of the continuous part: ``intervals[k] = (a_k, b_k)``, ascending.

    ``cut_left``/``cut_right`` say that the support is unbounded on that side: the outermost
    interval ends where the quadrature of ν (or the grid) ends, not at an edge of the limit.
    """

    intervals: list[tuple[float, float]]
    cut_left: bool
    cut_right: bool
    # The real δ at each end of each interval (as ``intervals``), NaN where the end was not found
    # by the edge equations (a hard edge, a bisection, a cut).
    edge_delta: list[tuple[float, float]]
    # The coarse solution, for initial guesses and the CDF used to place the final grid.
    x: np.ndarray
    delta: np.ndarray
    density: np.ndarray
    inside: np.ndarray

    def solve_near(
        self, equation: BulkEquation, points: np.ndarray, scale: float, *, inside: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """``δ(x + iη)`` at ``points`` that lie inside (or outside) the support.

        Newton's method from the interpolated coarse solution where that start is safe, the full
        continuation in η elsewhere and wherever Newton fails or lands on the wrong side of the
        support (no density inside, or a complex δ outside).
        """
        z = points + 1j * equation.eta(scale)
        guess, safe = _interpolate_start(self, points)
        delta, converged = equation.newton(guess, z)
        if inside:
            wrong = equation.density(delta, z) <= 0
        else:
            wrong = ~equation.outside_poles(delta.real)
        retry = ~safe | ~converged | wrong
        if retry.any():
            delta[retry], converged[retry] = equation.solve(points[retry], scale)
        return delta, converged


def _inside(equation: BulkEquation, x: np.ndarray, delta: np.ndarray, scale: float) -> np.ndarray:
    """Whether each ``x`` (with ``δ(x + iη)`` given) is in the support.

    Outside the support ``δ`` is analytic across the real axis, so ``Im δ(x + iη) ∝ η``; inside,
    ``Im δ`` tends to a positive limit.  Dividing ``η`` by 10 therefore divides ``Im δ`` by 10
    outside and leaves it nearly unchanged inside: the test needs no threshold on the density,
    which fails both in the far tail of an unbounded spectrum (tiny density) and next to a hard
    edge (a density diverging like ``1/√x`` leaks far past the edge at finite η).  A ``δ`` inside
    the hull of the poles ``-1/g`` also marks the support: outside it, ``1 + gδ`` keeps its sign.
    """
    eta = equation.eta(scale)
    smaller, _ = equation.newton(delta, x + 1j * eta / _PROBE_RATIO)
    steady = delta.imag < _STEADY_RATIO * smaller.imag
    return steady | ~equation.outside_poles(delta.real)


def _interpolate_start(support: Support, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The coarse solution interpolated at ``points``, and where that start is safe.

    It is safe between two coarse points on the same side of the support test, with no edge
    between them: there δ is smooth (analytic in a gap, smooth inside a bulk).  Next to an edge δ
    varies like a square root, or faster at a hard edge, and Newton's method from an interpolated
    start can land on a wrong root.
    """
    right = np.clip(np.searchsorted(support.x, points), 1, support.x.size - 1)
    edges = np.array([v for interval in support.intervals for v in interval])
    between = np.searchsorted(edges, support.x[right - 1]) == np.searchsorted(edges, support.x[right])
    safe = (support.inside[right] == support.inside[right - 1]) & between
    # And δ itself must vary little between the two: interpolation is then accurate to a small
    # fraction of |δ|, well inside Newton's basin (not so where δ ~ |x|^{-1/2} at a hard edge).
    left_delta, right_delta = support.delta[right - 1], support.delta[right]
    variation = np.abs(right_delta - left_delta)
    safe &= variation <= _SMOOTH_VARIATION * np.maximum(np.abs(left_delta), np.abs(right_delta))
    safe &= (points >= support.x[0]) & (points <= support.x[-1])
    guess = np.interp(points, support.x, support.delta.real) + 1j * np.interp(
        points, support.x, support.delta.imag
    )
    return guess, safe


def _search_edge(equation: BulkEquation, x_out: float, x_in: float, scale: float) -> float:
    """The edge between ``x_out`` and ``x_in`` by repeated subdivision with the support test.

    Each round tests ``_SEARCH_POINTS`` points at once (one vectorised continuation) and keeps
    the sub-interval where the test changes: ``_SEARCH_ROUNDS`` rounds narrow the bracket by
    ``(_SEARCH_POINTS + 1) ** _SEARCH_ROUNDS``.  Used where Newton's method on the edge
    equations does not converge (a hard edge, or an edge where the density does not vanish
    like a square root).
    """
    for _ in range(_SEARCH_ROUNDS):
        trial = np.linspace(x_out, x_in, _SEARCH_POINTS + 2)[1:-1]
        delta, _ = equation.solve(trial, scale)
        inside = _inside(equation, trial, delta, scale)
        first = int(np.argmax(inside)) if inside.any() else trial.size
        x_out = x_out if first == 0 else trial[first - 1]
        x_in = x_in if first == trial.size else trial[first]
    return 0.5 * (x_out + x_in)


def _outward_edge(
    fine: BulkEquation, x: np.ndarray, inside: np.ndarray, out_index: int, in_index: int, scale: float
) -> tuple[float, float] | None:
    """The full law's edge where it lies beyond the compressed law's last point outside a bulk.

    The edge equations are only solved within a grid spacing of the compressed law's bracket
    ``(x[out_index], x[in_index])``.  When the full law's bulk reaches past ``x[out_index]``, they
    fail there; this walks outward over the grid points the compressed law calls outside (up to
    ``_OUTWARD_POINTS``, never into the next bulk) with the full law's support test, and solves
    the edge equations in the first bracket where the full law changes from in to out (by
    subdivision with the full law's support test if they fail again).  Returns ``None`` when the
    full law agrees that ``x[out_index]`` is outside (the failure has another cause) or when no
    point of the walk is outside.
    """
    step = out_index - in_index
    walk = [out_index]
    while len(walk) < _OUTWARD_POINTS and 0 <= walk[-1] + step < x.size and not inside[walk[-1] + step]:
        walk.append(walk[-1] + step)
    points = x[walk]
    delta, _ = fine.solve(points, scale)
    full_inside = _inside(fine, points, delta, scale)
    if not full_inside[0] or full_inside.all():
        return None
    k = int(np.argmin(full_inside))
    refined = fine.refine_edge(points[k], points[k - 1], delta[k].real)
    if refined is None:
        return _search_edge(fine, points[k], points[k - 1], scale), np.nan
    return refined


def locate_support(
    equation: BulkEquation,
    fine: BulkEquation,
    lo: float,
    hi: float,
    scale: float,
    *,
    points: int,
    cut_left: bool,
    cut_right: bool,
) -> Support:
    """Find the bulks of the density on ``[lo, hi]``.

    The coarse pass solves ``equation`` (the compressed law) on a grid uniform in
    ``asinh(x / scale)``; each change between in- and out-of-support is refined to an edge of
    ``fine`` (the full law), by Newton's method on the edge equations, or by bisection on the
    support test where Newton fails (a hard edge, such as 0 at ``c = 1``).
    """
    warped = np.linspace(np.arcsinh(lo / scale), np.arcsinh(hi / scale), points)
    x = scale * np.sinh(warped)
    # The atom at 0 is removed analytically; a grid point exactly there would be all atom.
    x[np.abs(x) < 1e-9 * scale] = 1e-9 * scale
    delta, _ = equation.solve(x, scale)
    density = equation.density(delta, x + 1j * equation.eta(scale))
    x, delta, density = _refine_heavy_panels(equation, x, delta, density, scale)
    inside = _inside(equation, x, delta, scale)
    edges: list[float] = []
    deltas: list[float] = []
    changes = np.flatnonzero(inside[1:] != inside[:-1])
    for i in changes:
        out_index, in_index = (i, i + 1) if inside[i + 1] else (i + 1, i)
        refined = fine.refine_edge(x[out_index], x[in_index], delta[out_index].real)
        if refined is None:
            refined = _outward_edge(fine, x, inside, int(out_index), int(in_index), scale)
        if refined is None:
            refined = _search_edge(equation, x[out_index], x[in_index], scale), np.nan
        edges.append(refined[0])
        deltas.append(refined[1])
    if equation.hard_edge:
        # p = n P(g ≠ 0) exactly: the density diverges like |x|^(-1/2) at 0, where neither the
        # edge equations nor the support test converge; 0 is the edge.
        nearest = int(np.argmin(np.abs(edges))) if edges else None
        if nearest is not None and abs(edges[nearest]) < _HARD_EDGE_SNAP * scale:
            edges[nearest], deltas[nearest] = 0.0, np.nan
    # A grid that starts or ends inside the support was cut there (an unbounded side), or it
    # starts just off 0 where H is semi-definite and the support reaches 0.
    if inside[0]:
        edges.insert(0, x[0] if x[0] < 0 else 0.0)
        deltas.insert(0, np.nan)
    if inside[-1]:
        edges.append(x[-1] if x[-1] > 0 else 0.0)
        deltas.append(np.nan)
    intervals = [(edges[k], edges[k + 1]) for k in range(0, len(edges), 2)]
    end_deltas = [(deltas[k], deltas[k + 1]) for k in range(0, len(deltas), 2)]
    return Support(intervals, cut_left, cut_right, end_deltas, x, delta, density, inside)


def _refine_heavy_panels(
    equation: BulkEquation, x: np.ndarray, delta: np.ndarray, density: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Subdivide the coarse panels that hold more than ``_PANEL_MASS`` of the spectrum.

    The coarse grid is uniform in ``asinh(x/scale)``, and ``scale`` follows ``E|g|``: for a
    heavy-tailed law of ``g`` (log-normal, the exponential loss at ``‖w‖ ≥ 2``) the mean is far
    above the typical ``g``, and the bulk's core falls into one or two coarse panels.  The final
    grid is placed by the coarse distribution function, so those panels are cut into
    ``_PANEL_SPLITS`` until none holds more than ``_PANEL_MASS`` (a few rounds at most).
    """
    for _ in range(_REFINE_ROUNDS):
        mass = 0.5 * (density[1:] + density[:-1]) * np.diff(x)
        heavy = np.flatnonzero(mass > _PANEL_MASS * max(float(mass.sum()), 1e-300))
        if heavy.size == 0:
            break
        fractions = np.arange(1, _PANEL_SPLITS) / _PANEL_SPLITS
        added = (x[heavy, None] + np.diff(x)[heavy, None] * fractions[None, :]).ravel()
        added_delta, _ = equation.solve(added, scale)
        added_density = equation.density(added_delta, added + 1j * equation.eta(scale))
        order = np.argsort(np.concatenate([x, added]), kind="stable")
        x = np.concatenate([x, added])[order]
        delta = np.concatenate([delta, added_delta])[order]
        density = np.concatenate([density, added_density])[order]
    return x, delta, density


def _cumulative(x: np.ndarray, density: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(x))])


def cumulative_mass(x: np.ndarray, density: np.ndarray) -> np.ndarray:
    """``∫_{x_0}^{x_i} density`` at every grid point, exact for power laws at the bulk ends.

    Interior panels use the trapezoidal rule.  A panel that ends at a zero of the density (a
    bulk's edge) or where it is infinite (0 at the critical ratio) is integrated as
    ``ρ ∝ |x − e|^α`` with ``α`` fitted to the next two points:
    ``α = 1/2`` at a square-root edge, ``-1/2`` at a hard edge, where the trapezoidal rule
    would make errors of order ``√(panel width)``.
    """
    panels = 0.5 * (density[1:] + density[:-1]) * np.diff(x)
    singular = (density == 0.0) | np.isinf(density)
    n = x.size
    for i in range(n - 1):
        for edge, near, far in ((i, i + 1, i + 2), (i + 1, i, i - 1)):
            if not singular[edge] or not 0 <= far < n or singular[near] or singular[far]:
                continue
            d_near, d_far = abs(x[near] - x[edge]), abs(x[far] - x[edge])
            alpha = np.log(density[far] / density[near]) / np.log(d_far / d_near)
            panels[i] = density[near] * d_near / (1.0 + float(np.clip(alpha, -0.9, 2.0)))
    return np.concatenate([[0.0], np.cumsum(panels)])


def _bulk_points(a: float, b: float, count: int, support: Support) -> np.ndarray:
    """``count`` abscissae on ``[a, b]``, both ends included.

    Half cluster at the ends like Chebyshev points (square-root edges), in the coordinate
    ``asinh((x - median)/spread)`` so that a heavy tail is covered logarithmically; half sit at
    equal steps of the coarse distribution function, where the mass is.
    """
    chebyshev_count = max(count // 2, 2)
    quantile_count = count - chebyshev_count
    inside = (support.x > a) & (support.x < b)
    xs, cdf = support.x[inside], _cumulative(support.x[inside], support.density[inside])
    if xs.size >= 4 and cdf[-1] > 0:
        median = float(np.interp(0.5 * cdf[-1], cdf, xs))
        spread = float(np.interp(0.75 * cdf[-1], cdf, xs) - np.interp(0.25 * cdf[-1], cdf, xs))
        spread = max(spread, 1e-3 * (b - a))
    else:
        median, spread = 0.5 * (a + b), b - a
    lo, hi = np.arcsinh((a - median) / spread), np.arcsinh((b - median) / spread)
    s = 0.5 * (1.0 - np.cos(np.pi * np.linspace(0.0, 1.0, chebyshev_count)))
    chebyshev = median + spread * np.sinh(lo + (hi - lo) * s)
    chebyshev[0], chebyshev[-1] = a, b
    if xs.size >= 4 and cdf[-1] > 0 and quantile_count > 0:
        levels = (np.arange(quantile_count) + 0.5) / quantile_count * cdf[-1]
        quantiles = np.interp(levels, cdf, xs)
    else:
        quantiles = a + (b - a) * (np.arange(quantile_count) + 0.5) / max(quantile_count, 1)
    points = np.sort(np.concatenate([chebyshev, np.clip(quantiles, a, b)]))
    # Coinciding abscissae would make zero-width trapezoids; nudge them apart inside (a, b).
    for i in range(1, points.size - 1):
        if points[i] <= points[i - 1]:
            points[i] = np.nextafter(points[i - 1], np.inf)
    return points


def _allocate(points: int, masses: np.ndarray, minimum: int = 16) -> np.ndarray:
    """Share ``points`` between bulks in proportion to their mass, at least ``minimum`` each."""
    share = masses / max(float(masses.sum()), 1e-300)
    counts = np.full(masses.size, minimum)
    spare = points - minimum * masses.size
    if spare < 0:
        raise ValueError(f"{points} grid points cannot resolve {masses.size} bulks")
    extra = spare * share
    counts += np.floor(extra).astype(int)
    order = np.argsort(-(extra - np.floor(extra)), kind="stable")
    counts[order[: points - counts.sum()]] += 1
    return counts


def _segment_points(
    coarse: BulkEquation,
    shifted: BulkEquation,
    make_segments: Callable[[], BulkEquation],
    start: np.ndarray,
    z: np.ndarray,
    scale: float,
    delta: np.ndarray,
    converged: np.ndarray,
    phi: np.ndarray,
    density: np.ndarray,
) -> None:
    """Solve on the segment law the points whose root of the full law is less accurate than it.

    The full law's error at its root ``delta`` is estimated by ``shifted``'s residual there; the
    segment law's (``make_segments()``, built only when some root is not exact) by its residual at
    up to ``_ACCURACY_SAMPLE`` roots that are exact (to ``_QUADRATURE_TOLERANCE``).  Points with
    no accurate root at all (not converged, no density) go to the segment law too, but none whose
    density is negligible (``_NEGLIGIBLE_DENSITY``).  Newton's method starts from the compressed
    law's ``δ`` (continuous like the segment law's, and close to it); where it fails or ends off
    the physical branch (:meth:`BulkEquation.physical`), from the continuation in ``Im z`` with
    the fine ratio of ``coarse``, then of the segment law itself.  A point left off it is not
    converged.  Updates ``delta``, ``converged``, ``phi`` and ``density`` in place.
    """
    shifted_phi, _ = shifted.read(delta, z)
    error = np.abs(shifted_phi) / np.maximum(np.abs(delta), 1e-300)
    error[~converged | (density <= 0)] = np.inf
    candidate = error > _QUADRATURE_TOLERANCE
    if not candidate.any():
        return
    # The density at stake, from the compressed law (continuous, within ~1e-2 where the full law's
    # root is not), on its physical branch: where the density is tiny its start can lie on the cut
    # of a piece's atanh, and steps of _ETA_RATIO_FINE follow the branch instead.  Points where the
    # density is negligible are not worth the segment law's cost.
    start = start.copy()
    off_branch = np.flatnonzero(candidate)[~coarse.physical(start[candidate], z[candidate])]
    if off_branch.size:
        start[off_branch], _ = coarse._continue(z[off_branch].real, scale, _ETA_RATIO_FINE)
    at_stake = coarse.density(start[candidate], z[candidate])
    peak = max(float(density[~candidate].max(initial=0.0)), float(at_stake.max()))
    candidate[candidate] = at_stake >= _NEGLIGIBLE_DENSITY * peak
    if not candidate.any():
        return
    segments = make_segments()
    exact = np.flatnonzero(error <= _QUADRATURE_TOLERANCE)
    sample = exact[np.linspace(0, exact.size - 1, min(exact.size, _ACCURACY_SAMPLE)).astype(int)]
    segment_phi, _ = segments.read(delta[sample], z[sample])
    own_error = float(np.max(np.abs(segment_phi) / np.abs(delta[sample]), initial=0.0))
    switch = candidate & (error > own_error)
    if not switch.any():
        return
    points = z[switch]
    new_delta, new_converged = segments.newton(start[switch], points)
    new_phi, new_density, physical = segments.inspect(new_delta, points)
    for attempt in (coarse, segments):
        retry = ~new_converged | ~physical
        if not retry.any():
            break
        # Where the density is tiny, steps of _ETA_RATIO overshoot onto the cut (as the compressed
        # law's start did); steps of _ETA_RATIO_FINE follow the physical branch.  The compressed
        # law's branch, polished on the segment law, costs a tenth of the segment law's own.
        guess, _ = attempt._continue(points[retry].real, scale, _ETA_RATIO_FINE)
        new_delta[retry], new_converged[retry] = segments.newton(guess, points[retry])
        new_phi[retry], new_density[retry], physical[retry] = segments.inspect(
            new_delta[retry], points[retry]
        )
    delta[switch], converged[switch] = new_delta, new_converged & physical
    phi[switch], density[switch] = new_phi, new_density


def density_grid(
    coarse: BulkEquation,
    fine: BulkEquation,
    support: Support,
    scale: float,
    points: int,
    *,
    shifted: BulkEquation | None = None,
    segments: Callable[[], BulkEquation] | None = None,
) -> tuple[np.ndarray, np.ndarray, bool, float]:
    """The density of ``fine`` on ``points`` abscissae that resolve every bulk.

    ``δ`` is first solved with ``coarse`` (a compressed law, cheap to evaluate) from the support's
    coarse solution, then polished by Newton's method on ``fine`` (the full law) to its own
    tolerance: the density is that of the full law, not of its compression.  Points where the
    polish fails or leaves the support (within the compression error of an edge, where the
    compressed law may be outside its bulk) are solved on ``fine`` by the full continuation.

    Where ``fine``'s atoms do not resolve ``F(δ)`` (the pole of ``g/(1+gδ)`` at ``g = −1/δ`` within
    about a node spacing of the values of ``g``) the atomic equation has spurious roots between its
    poles and no accurate one.  Such points are told by ``shifted``, the same quadrature with the
    nodes moved by half a step, and solved on ``segments()``, the same quadrature as a continuous
    law (:func:`pipeline.theory.law.segment_law`), see :func:`_segment_points`.  This happens
    next to 0 when ``p > n`` and ``g`` has mass near 0, where ``|δ| ~ (c − 1)/|x|`` and the pole
    closes in on ``g = 0`` like ``x²``, and next to the hard edge at ``p = n``.  Without the two
    (a discrete law, or no divergence at 0) every point is solved on ``fine``.

    Returns ``(x, density, converged, residual)``: ``residual`` is the largest ``|Φ|/|δ|`` over the
    grid, of the equation each point was solved on.  Points are shared between bulks in proportion
    to their mass (at least 16 each); the ends of each bulk are grid points where the density is
    set to exactly 0, and a point where it diverges inside a bulk (0 at the critical ratio) is a
    grid point where it is ``+inf``.
    """
    # At the critical ratio c P(g ≠ 0) = 1 the density diverges at 0.  Where 0 is inside a bulk,
    # the bulk is gridded as two pieces meeting there, so that 0 is an end point (where the
    # density is set to +inf) and the panels next to it are integrated as power laws.
    pieces: list[tuple[float, float]] = []
    for a, b in support.intervals:
        pieces += [(a, 0.0), (0.0, b)] if fine.hard_edge and a < 0.0 < b else [(a, b)]
    cdf = _cumulative(support.x, support.density)
    masses = np.array([np.interp(b, support.x, cdf) - np.interp(a, support.x, cdf) for a, b in pieces])
    shared = len(pieces) - len(support.intervals)
    counts = _allocate(points + shared, masses)
    x = np.concatenate([_bulk_points(a, b, n, support) for (a, b), n in zip(pieces, counts, strict=True)])
    ends = np.cumsum(counts)
    interior = np.ones(x.size, dtype=bool)
    interior[ends - counts] = interior[ends - 1] = False
    # The split point 0 appears twice; keep one.
    duplicate = np.flatnonzero(np.diff(x) == 0.0)
    x, interior = np.delete(x, duplicate), np.delete(interior, duplicate)
    points_inside = x[interior]
    z = points_inside + 1j * fine.eta(scale)
    start, _ = support.solve_near(coarse, points_inside, scale, inside=True)
    delta, converged = fine.newton(start, z)
    phi, inside_density = fine.read(delta, z)
    # Where the density is small next to the compression error of δ (at an edge, in a sparse
    # tail) the compressed start may lie in the basin of another root with Im δ > 0 but a near-0
    # density: those points are solved again by the full continuation, which follows the
    # physical branch down from large Im z.
    faint = inside_density < _FAINT_DENSITY * inside_density.max(initial=0.0)
    wrong = ~converged | (inside_density <= 0) | faint
    if wrong.any():
        delta[wrong], converged[wrong] = fine.solve(points_inside[wrong], scale)
        phi[wrong], inside_density[wrong] = fine.read(delta[wrong], z[wrong])
    if shifted is not None and segments is not None:
        _segment_points(coarse, shifted, segments, start, z, scale, delta, converged, phi, inside_density)
    density = np.zeros(x.size)
    density[interior] = inside_density
    if shared:
        density[x == 0.0] = np.inf
    residual = float(np.max(np.abs(phi) / np.maximum(np.abs(delta), 1e-300), initial=0.0))
    return x, density, bool(converged.all()), residual
