"""``solve(scenario)``: the limiting Hessian spectrum of one GLM grid point.

The orchestration of :mod:`~pipeline.theory.law` (the law of ``g``), :mod:`~pipeline.theory.bulk`
(density, support, edges) and :mod:`~pipeline.theory.spikes` (isolated eigenvalues).  The search
for the support, the continuation in ``Im z`` and the spike scan use a compressed law of ``g``
(``_SEARCH_PIECES`` atoms or uniform pieces, see
:meth:`~pipeline.theory.law.CurvatureLaw.compressed`), which makes their many evaluations cheap;
the density, the edges and the spikes are then solved on the full quadrature (the density by
Newton steps from the compressed solution), so that the compression only costs iterations, not
accuracy.  The bulk equation takes the full quadrature's marginal law of ``g`` with equal values
merged (exact); ``Λ`` in the spike equation takes the joint law of ``(u, g)``.  Where the
quadrature's atoms do not resolve ``F(δ)`` (next to 0 when ``p ≥ n P(g ≠ 0)``, where
``|δ| → ∞``), the density is solved on the same quadrature made continuous
(:func:`~pipeline.theory.law.segment_law`, see :func:`~pipeline.theory.bulk.density_grid`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from pipeline.scenario import TARGETS, Scenario
from pipeline.theory.bulk import BulkEquation, Support, cumulative_mass, density_grid, locate_support
from pipeline.theory.law import CurvatureLaw, Geometry, curvature_law, geometry, segment_law
from pipeline.theory.spikes import edge_determinant, find_spikes

__all__ = ["TheoryResult", "solve", "spike_margin"]

# The support search and the spike scan only classify points, bracket roots and give starting
# points (the density, the edges and the spikes are then solved with the full law).
_SEARCH_PIECES = 48
_COARSE_POINTS = 256
# On an unbounded side the grid stops where ν has mass below this beyond: the eigenvalue mass
# left out is of the same order (a large g_i makes one eigenvalue ≈ c t g_i).
_TAIL_MASS = 1e-9
# Margins on the a-priori spectral bounds ‖H‖ ≤ max|g| ‖X‖²/n: the bulk grid, the spike scan.
_BOUND_MARGIN = 1.05
_SPIKE_MARGIN = 1.5
# A density whose mass is off by more than this is flagged as not converged (the integration
# error itself is below 1e-4 at square-root edges, 2e-3 at a hard edge).
_MASS_WARNING = 1e-2
# Fewest abscissae of the grid the mass is checked on (400: the default, where the integration
# error is below 1e-4 at square-root edges and 2e-3 at a hard edge).
_MASS_POINTS = 400
# Where a semi-definite H's grid starts, relative to the spectral scale: off the atom at 0 and
# below any edge the grid can resolve.
_ZERO_OFFSET = 1e-9
_UNBOUNDED_NOTE = (
    "the law of g is unbounded: Theorem 2 does not apply and no isolated eigenvalue is reported; "
    "outliers seen at finite p are finite-size effects that the bulk absorbs as n, p grow"
)


@dataclass(frozen=True)
class TheoryResult:
    """The limiting spectrum of a scenario's Hessian.

    Attributes
    ----------
    x, density : numpy.ndarray
        The density of the continuous part on a grid that resolves every bulk (the ends of each
        bulk are grid points).  ``∫ density + atom_zero = 1`` up to the integration error.
    atom_zero : float
        Mass at 0: ``max(0, 1 - P(g ≠ 0)/c)`` (the rank deficit of ``H`` when ``p > n``).
    edges : numpy.ndarray
        ``(n_bulks, 2)``: the ends of every bulk, ascending; ``±inf`` on an unbounded side.
    edge_left, edge_right : float
        The outermost edges.
    spikes : numpy.ndarray
        Isolated eigenvalues, ascending, on either side of the bulk or in its gaps.
    spike_align : dict of str to numpy.ndarray
        For ``"mu"``, ``"w_star"``, ``"w"``: squared cosine of each spike's eigenvector with the
        unit target vector (NaN where the target is zero).
    spikes_defined : bool
        ``False`` when the law of ``g`` is unbounded: Theorem 2 does not apply, ``spikes`` is empty.
    negative_fraction : float
        Mass of the spectrum below 0.
    mass : float
        ``∫ density + atom_zero``: 1 up to integration error and the cut tails of unbounded supports
        (integrated on a grid of at least 400 points, whatever ``points``).
    converged : bool
        Every grid point and edge solved to tolerance.
    residual : float
        Largest relative residual ``|Φ(δ, z)| / |δ|`` of the fixed-point equation on the grid (of
        the full quadrature of ``g``, or of its segment law where that was solved).
    note : str
        Anything the user should know about this result (why there are no spikes, a failure).
    """

    x: np.ndarray
    density: np.ndarray
    atom_zero: float
    edges: np.ndarray
    spikes: np.ndarray
    spike_align: dict[str, np.ndarray]
    spikes_defined: bool
    negative_fraction: float
    mass: float
    converged: bool
    residual: float
    note: str = ""
    _cumulative: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_cumulative", cumulative_mass(self.x, self.density))

    @property
    def edge_left(self) -> float:
        """The leftmost edge of the support (``-inf`` if unbounded)."""
        return float(self.edges[0, 0])

    @property
    def edge_right(self) -> float:
        """The rightmost edge of the support (``+inf`` if unbounded)."""
        return float(self.edges[-1, 1])

    def cdf(self, values: np.ndarray) -> np.ndarray:
        """The limiting distribution function (the atom at 0 included) at ``values``."""
        values = np.asarray(values, dtype=float)
        continuous = np.interp(values, self.x, self._cumulative, left=0.0, right=self._cumulative[-1])
        return continuous + self.atom_zero * (values >= 0)


def _grid_bounds(
    law: CurvatureLaw, bounds: tuple[bool, bool], t_max: float, c: float, scale: float
) -> tuple[float, float]:
    """Where the bulk can lie: ``‖H‖ ≤ max|g| ‖X‖²/n`` with ``‖X‖²/n → t_max (1 + √c)²``.

    On an unbounded side the extreme ``g`` is replaced by its ``_TAIL_MASS`` quantile.  A
    semi-definite ``H``'s grid starts ``_ZERO_OFFSET`` of the spectral ``scale`` off 0 (of the far
    bound if that is nearer): a heavy tail puts the far bound orders of magnitude above the bulk,
    and a start relative to it could lie inside the bulk.
    """
    lower_bounded, upper_bounded = bounds
    g_lo = float(law.g.min()) if lower_bounded else law.quantile(_TAIL_MASS)
    g_hi = float(law.g.max()) if upper_bounded else law.quantile(1.0 - _TAIL_MASS)
    reach = t_max * (1.0 + math.sqrt(c)) ** 2 * _BOUND_MARGIN
    lo, hi = min(g_lo, 0.0) * reach, max(g_hi, 0.0) * reach
    # A one-signed g makes H semi-definite: the bulk is on one side of 0, where the grid starts
    # just off the atom at 0 (which is handled apart).
    near = _ZERO_OFFSET * min(scale, max(abs(lo), abs(hi)))
    return (lo if lo < 0 else near), (hi if hi > 0 else -near)


def _zero_hessian(points: int) -> TheoryResult:
    """``g = 0`` almost surely (e.g. phase retrieval at ``w = w* = 0``): ``H = 0``."""
    empty = {name: np.empty(0) for name in TARGETS}
    return TheoryResult(
        x=np.linspace(-1.0, 1.0, points),
        density=np.zeros(points),
        atom_zero=1.0,
        edges=np.zeros((1, 2)),
        spikes=np.empty(0),
        spike_align=empty,
        spikes_defined=True,
        negative_fraction=0.0,
        mass=1.0,
        converged=True,
        residual=0.0,
        note="g = 0 almost surely: the Hessian is 0",
    )


@dataclass(frozen=True)
class _Setup:
    """What the density, the spikes and the spike margin share: the law of ``g`` and the support."""

    geo: Geometry
    law: CurvatureLaw
    fine: BulkEquation
    coarse: BulkEquation
    support: Support
    scale: float
    # The full quadrature shifted by half a step, which tells the points whose pole its atoms do
    # not resolve; None where that cannot happen where the density matters (see of).
    shifted: BulkEquation | None
    scenario: Scenario

    def segments(self) -> BulkEquation:
        """The full quadrature as a continuous law (refined), for the points its atoms do not
        resolve; built only when there are some (a few milliseconds)."""
        centre, width, mass, tilt = segment_law(self.scenario, self.geo, self.law)
        fine = self.fine
        return BulkEquation(fine.c, fine.t, fine.pi, centre, mass, width, fine.atom_zero, tilt)

    @classmethod
    def of(cls, scenario: Scenario) -> _Setup | None:
        """The setup of a scenario, or ``None`` where ``g = 0`` almost surely (``H = 0``)."""
        c = scenario.c
        geo = geometry(scenario)
        law = curvature_law(scenario, geo)
        values, mass = law.marginal()
        if values.size == 0:
            return None
        t = np.asarray(scenario.covariance.eigenvalues)
        pi = np.asarray(scenario.covariance.weights)
        atom_zero = max(0.0, 1.0 - (1.0 - law.zero_mass) / c)
        # The bulk equation sees g's marginal law only: equal values merged (halves the work for
        # the symmetric laws of the logistic and exponential losses).
        fine = BulkEquation(c, t, pi, values, mass, np.zeros(values.size), atom_zero)
        centre, width, piece_mass = law.compressed(_SEARCH_PIECES)
        coarse = BulkEquation(c, t, pi, centre, piece_mass, width, atom_zero)
        shifted = None
        # |δ| → ∞ (and the pole -1/δ closes in on the values of g) only next to a divergence of the
        # Stieltjes transform at 0: the atom when p > n P(g ≠ 0), the hard edge when p = n P(g ≠ 0).
        # Elsewhere in the support |δ| is bounded and Im δ ≥ c π density(x) |δ|²/..., so the
        # atoms can only fail where the density is negligible.  A discrete law has no nodes to fail.
        if width.any() and (atom_zero > 0.0 or fine.hard_edge):
            shifted_values, shifted_mass = curvature_law(scenario, geo, shifted=True).marginal()
            shifted = BulkEquation(
                c, t, pi, shifted_values, shifted_mass, np.zeros(shifted_values.size), atom_zero
            )
        lower_bounded, upper_bounded = scenario.curvature_bounds
        scale = float(np.abs(law.g) @ law.weight) * float(t @ pi) * (1.0 + math.sqrt(c)) ** 2
        lo, hi = _grid_bounds(law, scenario.curvature_bounds, float(t.max()), c, scale)
        support = locate_support(
            coarse,
            fine,
            lo,
            hi,
            scale,
            points=_COARSE_POINTS,
            cut_left=not lower_bounded,
            cut_right=not upper_bounded,
        )
        return cls(geo, law, fine, coarse, support, scale, shifted, scenario)


def spike_margin(scenario: Scenario, side: str) -> float:
    """``det G`` at the outermost edge of the support on ``side``: its sign flips at a transition.

    As a scalar of the scenario (a norm, an angle, ``c``) moves, an isolated eigenvalue is born
    (or swallowed) at the edge exactly where a zero of ``det G`` crosses it, so the margin
    changes sign there; finding its root in that scalar locates the phase transition to
    root-finding precision, far below the spacing of any grid.  Which sign means "spike" depends
    on how many spikes lie beyond: compare with :func:`solve` at a point on either side.

    Parameters
    ----------
    scenario : Scenario
        With a bounded law of ``g`` (spikes are defined).
    side : {"left", "right"}
        The outer edge to look at.

    Returns
    -------
    float
        ``det G`` at that edge; NaN where it is not defined: an unbounded law of ``g``, ``H = 0``,
        or an edge not found by the edge equations (a hard edge at 0).

    Examples
    --------
    Square loss: a spike of μ leaves the Marchenko–Pastur bulk at ``‖μ‖⁴ = c``:

    >>> from pipeline import Scenario
    >>> below, above = (Scenario(0.25, model="linear", loss="square", mu={"norm": v}) for v in (0.6, 0.8))
    >>> spike_margin(below, "right") * spike_margin(above, "right") < 0
    True
    """
    if side not in ("left", "right"):
        raise ValueError(f"side: must be 'left' or 'right', not {side!r}")
    if not scenario.curvature_bounded:
        return math.nan
    setup = _Setup.of(scenario)
    if setup is None:
        return math.nan
    end, delta = (
        (setup.support.intervals[0][0], setup.support.edge_delta[0][0])
        if side == "left"
        else (setup.support.intervals[-1][1], setup.support.edge_delta[-1][1])
    )
    if not math.isfinite(delta):
        return math.nan
    return edge_determinant(setup.geo, setup.law, setup.fine, end, delta)


def solve(scenario: Scenario, *, points: int = 400) -> TheoryResult:
    """The limiting spectrum of the Hessian of a scenario: density, edges, spikes, alignments.

    Parameters
    ----------
    scenario : Scenario
        The grid point.
    points : int, default 400
        Length of the density grid ``x`` (at least 16 per bulk).

    Returns
    -------
    TheoryResult

    See Also
    --------
    pipeline.montecarlo.sample : the same spectrum at finite ``p``.

    Examples
    --------
    Marchenko–Pastur (square loss, ``C = I``) has edges ``(1 ± √c)²``:

    >>> from pipeline import Scenario, theory
    >>> result = theory.solve(Scenario(0.25, model="linear", loss="square"))
    >>> round(result.edge_left, 6), round(result.edge_right, 6)
    (0.25, 2.25)
    """
    setup = _Setup.of(scenario)
    if setup is None:
        return _zero_hessian(points)
    c, geo, law, fine, support = scenario.c, setup.geo, setup.law, setup.fine, setup.support
    scale = setup.scale
    atom_zero = fine.atom_zero
    t = np.asarray(scenario.covariance.eigenvalues)
    x, density, converged, residual = density_grid(
        setup.coarse, fine, support, scale, points, shifted=setup.shifted, segments=setup.segments
    )
    edges = np.array(support.intervals, dtype=float).reshape(-1, 2)
    if support.cut_left:
        edges[0, 0] = -np.inf
    if support.cut_right:
        edges[-1, 1] = np.inf
    cumulative = cumulative_mass(x, density)
    mass = float(cumulative[-1]) + atom_zero
    if points < _MASS_POINTS:
        # A coarse grid integrates the density with errors of a few percent next to a hard edge or
        # a heavy tail (1.6-3.8% at 48-64 points, c = 0.5-1.5): the mass, which checks the roots, is
        # taken on a grid that resolves it, so that the check flags wrong roots, not a coarse grid.
        check_x, check_density, check_converged, check_residual = density_grid(
            setup.coarse, fine, support, scale, _MASS_POINTS, shifted=setup.shifted, segments=setup.segments
        )
        mass = float(cumulative_mass(check_x, check_density)[-1]) + atom_zero
        converged = converged and check_converged
        residual = max(residual, check_residual)
    notes = []
    if abs(mass - 1.0) > _MASS_WARNING:
        # A density the grid or the quadrature of g does not resolve (two-dimensional laws of g
        # with mass near 0 at p > n, whose segment law is coarse).  Flag, never hide.
        converged = False
        notes.append(f"the density integrates to {mass:.4f}, not 1: unresolved near a singular point")
    bulk_only = TheoryResult(
        x=x,
        density=density,
        atom_zero=atom_zero,
        edges=edges,
        spikes=np.empty(0),
        spike_align={name: np.empty(0) for name in TARGETS},
        spikes_defined=False,
        negative_fraction=float(np.interp(0.0, x, cumulative, left=0.0, right=cumulative[-1])),
        mass=mass,
        converged=converged,
        residual=residual,
        note="; ".join([*notes, _UNBOUNDED_NOTE]),
    )
    if not scenario.curvature_bounded:
        return bulk_only
    # No eigenvalue of H lies beyond max|g| ‖X‖²/n, with ‖X‖/√n ≤ √t_max (1 + √c) + ‖μ‖.
    mu_norm = float(np.linalg.norm(geo.vectors["mu"]))
    reach = (math.sqrt(t.max()) * (1.0 + math.sqrt(c)) + mu_norm) ** 2 * _SPIKE_MARGIN
    bounds = (min(float(law.g.min()), 0.0) * reach, max(float(law.g.max()), 0.0) * reach)
    targets: dict[str, np.ndarray | None] = {
        name: (vector / np.linalg.norm(vector) if np.any(vector) else None)
        for name, vector in geo.vectors.items()
    }
    spikes = find_spikes(geo, law, fine, setup.coarse, support, bounds, scale, targets)
    return dataclasses.replace(
        bulk_only,
        spikes=np.array([spike.location for spike in spikes]),
        spike_align={name: np.array([spike.align[name] for spike in spikes]) for name in TARGETS},
        spikes_defined=True,
        note="; ".join(notes),
    )
