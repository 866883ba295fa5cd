"""The law of the curvature ``g`` and the low-rank geometry it depends on.

``g = ℓ''(y, wᵀx)`` depends on ``x`` only through ``u = Ũᵀz`` (``r ≤ 2`` Gaussian coordinates),
where ``C^{1/2}[w, w*] = Ũ S Vᵀ`` is a thin SVD and ``x = μ + C^{1/2}z`` (``shared/theory/glm.md``).
This module turns a scenario into

* :class:`Geometry`: every vector of the problem in the reduced basis ``(e₁⁽ʲ⁾, e₂⁽ʲ⁾)_j``, where
  ``C`` is diagonal, and the matrix ``U = [μ, C^{1/2}Ũ]`` of the rank-``(1 + r)`` part of ``Σ_f``;
* :class:`CurvatureLaw`: a quadrature of the joint law of ``(u, g)``, with which every expectation
  of the theory (``F(δ) = E[g/(1+gδ)]``, the matrix ``Λ``) is a weighted sum.

The quadrature's atoms resolve ``F(δ)`` only while the pole of ``g/(1+gδ)`` at ``g = −1/δ`` stays a
few node spacings away from the values ``g`` takes.  Where it does not (next to 0 when ``p > n``:
there ``|δ| → ∞`` and the pole closes in on ``g = 0`` like ``x²``), :meth:`CurvatureLaw.segments`
gives the same quadrature as a continuous law: between neighbouring nodes ``g`` and the Gaussian
weight are linear, which makes each segment a piece of ``g``'s line with a linear density, and
``F`` is then integrated exactly through the pole.  The nodes shifted by half a step
(``curvature_law(..., shifted=True)``) tell where the atoms suffice: the trapezoidal rule and the
midpoint rule agree to rounding where the integrand is resolved, and differ by about twice the
error where it is not.

The quadrature is the trapezoidal rule on a uniform grid in ``u``: the integrands are analytic in a
strip, where the rule converges geometrically.  The step is scaled by the singular values so that
``h`` and ``h*`` move by at most ``_H_STEP`` between nodes however large ``‖w‖`` is: fixed-node
Gauss–Hermite fails there (the paper's Corollary 2 at large ``‖w‖``, where ``g`` concentrates on
``|h| ≲ 10``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.scenario import TARGETS, Scenario

__all__ = ["CurvatureLaw", "Geometry", "curvature_law", "geometry", "segment_law"]

# Largest move of h or h* between neighbouring nodes.  The logistic curvature has poles at
# distance π from the real h axis, so the trapezoidal error is about exp(-2π²/_H_STEP) ≈ 1e-43:
# the step is set by the resolution of f = g/(1+gδ) near the spectral edges, where 1+gδ is small,
# and by the compression of ν into uniform pieces for the density (each piece should hold several
# nodes).  One-dimensional laws afford four times as many nodes as two-dimensional ones.
_H_STEP = {0: 0.05, 1: 0.05, 2: 0.2}
# Half-width of the grid in standard deviations: the Gaussian mass outside is 1.2e-15.
_U_RANGE = 8.0
# Nodes whose Gaussian weight is below this fraction of the largest are dropped (corners of 2-D grids).
_WEIGHT_FLOOR = 1e-18
# At most this many distinct values of g make a genuinely discrete law (a constant, or ±1 labels
# with h constant); a continuous law has as many values as quadrature nodes.
_DISCRETE_VALUES = 4
# Relative size below which a singular value of C^{1/2}[w, w*] is zero.
_RANK_TOLERANCE = 1e-12
# The segment law (see segment_law) is built on about this many nodes, its step refined at most
# _SEGMENT_REFINE times: its error falls like the step squared, to ~1e-4 of δ for a line of nodes
# (refined 2 or 3 times), and its cost (only where the atoms fail) grows with the nodes.
_SEGMENT_NODES = 1024
_SEGMENT_REFINE = 8


@dataclass(frozen=True)
class Geometry:
    """The scenario's vectors in the reduced basis where ``C`` is diagonal.

    Attributes
    ----------
    t : numpy.ndarray
        Eigenvalue of ``C`` on each reduced coordinate, shape ``(2J,)``.
    vectors : dict of str to numpy.ndarray
        ``μ, w*, w`` as ``(2J,)`` arrays.
    offset : numpy.ndarray
        ``(wᵀμ, w*ᵀμ)``: the means of ``(h, h*)``.
    mixing : numpy.ndarray
        ``(2, r)`` matrix ``V S``: ``(h, h*) = offset + mixing @ u``.
    low_rank : numpy.ndarray
        ``U = [μ, C^{1/2}Ũ]`` with the ``μ`` column dropped when ``μ = 0``, shape ``(2J, q)``.
    has_mu : bool
        Whether the first column of ``low_rank`` is ``μ``.
    """

    t: np.ndarray
    vectors: dict[str, np.ndarray]
    offset: np.ndarray
    mixing: np.ndarray
    low_rank: np.ndarray
    has_mu: bool

    @property
    def rank(self) -> int:
        """``r``, the number of Gaussian directions ``g`` depends on."""
        return self.mixing.shape[1]


def geometry(scenario: Scenario) -> Geometry:
    """Reduce the scenario's vectors to the basis ``(e₁⁽ʲ⁾, e₂⁽ʲ⁾)_j``."""
    t = np.repeat(np.asarray(scenario.covariance.eigenvalues), 2)
    vectors = {name: scenario.coefficients[name].reshape(-1) for name in TARGETS}
    root_t = np.sqrt(t)
    a = root_t[:, None] * np.stack([vectors["w"], vectors["w_star"]], axis=1)
    left, singular, right_t = np.linalg.svd(a, full_matrices=False)
    keep = singular > _RANK_TOLERANCE * max(1.0, singular.max(initial=0.0))
    left, singular, right_t = left[:, keep], singular[keep], right_t[keep]
    mixing = right_t.T * singular
    offset = np.array([vectors["w"] @ vectors["mu"], vectors["w_star"] @ vectors["mu"]])
    has_mu = bool(np.any(vectors["mu"]))
    columns = ([vectors["mu"][:, None]] if has_mu else []) + [root_t[:, None] * left]
    return Geometry(t, vectors, offset, mixing, np.concatenate(columns, axis=1), has_mu)


@dataclass(frozen=True)
class CurvatureLaw:
    """A quadrature of the joint law of ``(u, g)``: ``E[φ(u, g)] = Σ_k weight_k φ(u_k, g_k)``.

    Attributes
    ----------
    g : numpy.ndarray
        Curvature at each node, shape ``(N,)``.
    weight : numpy.ndarray
        Non-negative weights summing to 1.
    u : numpy.ndarray
        Gaussian coordinates of each node, shape ``(N, r)``.
    neighbour : numpy.ndarray
        Index of the next node along the segment axis (the grid axis along which ``g`` moves
        most), with the same label, or -1: the pairs that :meth:`segments` joins.
    """

    g: np.ndarray
    weight: np.ndarray
    u: np.ndarray
    neighbour: np.ndarray

    @property
    def zero_mass(self) -> float:
        """``P(g = 0)``: the Hessian has at least a fraction ``1 - (1 - zero_mass)/c`` zero eigenvalues."""
        return float(self.weight[self.g == 0.0].sum())

    def transform(self, delta: np.ndarray, power: int = 1) -> np.ndarray:
        """``E[g^power / (1 + gδ)^power]`` for each ``δ`` (any shape, real or complex)."""
        delta = np.asarray(delta)
        ratio = self.g / (1.0 + np.multiply.outer(delta, self.g))
        return (ratio**power) @ self.weight

    def quantile(self, level: float) -> float:
        """The ``level`` quantile of ``g``."""
        order = np.argsort(self.g)
        cumulative = np.cumsum(self.weight[order])
        index = min(int(np.searchsorted(cumulative, level)), len(order) - 1)
        return float(self.g[order][index])

    def marginal(self) -> tuple[np.ndarray, np.ndarray]:
        """The law of ``g`` alone without its mass at 0: distinct values, ascending, and their masses.

        Nodes with the same ``g`` are one atom of ν with the summed weight, exactly: ``F(δ)`` and
        everything else the bulk equation needs depend on ``g``'s marginal law only.  (Symmetric
        grids make such pairs: the exponential loss gives ``g(y = 1, h) = g(y = −1, −h)``, the
        logistic loss ``g(h) = g(−h)``.)  The joint law of ``(u, g)``, which ``Λ`` needs, is not
        merged.
        """
        return _merged(self.g, self.weight)

    def compressed(self, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A law of ``g`` with at most ``bins`` pieces and no mass at 0: ``(centre, width, mass)``.

        A law with at most ``_DISCRETE_VALUES`` distinct values is discrete (``g`` constant, or a
        function of ±1 labels only) and is kept as atoms (width 0).  Otherwise the sorted nodes
        are grouped into bins whose edges are the union of equal-mass quantiles
        (resolving where ν has mass) and equal steps of ``asinh(g / scale)`` (resolving its
        tails, linearly near 0 and logarithmically far out), and each bin becomes a uniform
        piece over its share of the line.  The pieces tile the range of ``g`` without gaps, so a
        continuous ν stays continuous: atoms would split the far tail of an unbounded spectrum
        into spurious little bulks.
        """
        values, mass = _merged(self.g, self.weight)
        if values.size <= _DISCRETE_VALUES:
            return values, np.zeros_like(values), mass
        scale = float(np.average(np.abs(values), weights=mass))
        warped = np.arcsinh(values / scale)
        cumulative = np.cumsum(mass) / mass.sum()
        uniform_edges = np.linspace(warped[0], warped[-1], bins // 2 + 1)[1:-1]
        quantile_edges = np.interp(np.linspace(0.0, 1.0, bins // 2 + 1)[1:-1], cumulative, warped)
        group = np.searchsorted(np.union1d(uniform_edges, quantile_edges), warped, side="right")
        starts = np.flatnonzero(np.diff(group, prepend=-1))
        group_mass = np.add.reduceat(mass, starts)
        # Boundaries halfway between neighbouring groups; the outer ones at the extreme values.
        ends = np.append(starts[1:], values.size) - 1
        inner = 0.5 * (values[ends[:-1]] + values[starts[1:]])
        boundaries = np.concatenate([[values[0]], inner, [values[-1]]])
        return 0.5 * (boundaries[1:] + boundaries[:-1]), np.diff(boundaries), group_mass

    def segments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The quadrature as a continuous law of ``g`` without mass at 0: ``(centre, width, mass, tilt)``.

        Along each line of nodes on the segment axis, the density of ``g`` at a node is its weight
        over ``|dg/du|`` (a central difference), and between two neighbouring nodes it is linear
        in ``g``: a piece ``[centre ± width/2]`` whose density rises by the factor
        ``(1 + tilt)/(1 − tilt)`` from its lower end to its upper one.  The density is then
        continuous along the line and within ``O(h²)`` of the exact one: a chord slope per
        segment instead would make it jump by ``h g''/g'`` at every node (10% for the optimal
        label transform's steps), an error that a pole close to the real axis reads off directly.
        At a turning point of ``g`` (no central difference) each side takes its own chord.
        Segments along which ``g`` is constant are atoms (width 0) with the trapezoidal weight,
        those with ``g = 0`` at both ends are left out (they belong to the mass at 0, as the nodes
        do), and identical pieces are merged.  The masses are scaled to the segments' trapezoidal
        weight, the nodes' ``P(g ≠ 0)`` but for half the weight of each line's end nodes (Gaussian
        weights at ``_U_RANGE`` standard deviations or at the dropped corners, 1e-14 of the peak
        at most); they agree with it to ``O(h²)`` before.
        """
        neighbour = self.neighbour
        previous = np.full(neighbour.size, -1)
        previous[neighbour[neighbour >= 0]] = np.flatnonzero(neighbour >= 0)
        start = np.flatnonzero(neighbour >= 0)
        end = neighbour[start]
        g, weight = self.g, self.weight
        g_start, g_end = g[start], g[end]
        keep = (g_start != 0.0) | (g_end != 0.0)
        start, end, g_start, g_end = start[keep], end[keep], g_start[keep], g_end[keep]
        chord = g_end - g_start
        before, after = previous[start], neighbour[end]
        # dg per step at each end: the central difference where g is monotone through the node.
        slope_start, slope_end = chord.copy(), chord.copy()
        central = (before >= 0) & ((g_start - g[before]) * chord > 0)
        slope_start[central] = 0.5 * (g_end[central] - g[before[central]])
        central = (after >= 0) & ((g[after] - g_end) * chord > 0)
        slope_end[central] = 0.5 * (g[after[central]] - g_start[central])
        flat = chord == 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            rho_start = np.where(flat, 0.0, weight[start] / np.abs(slope_start))
            rho_end = np.where(flat, 0.0, weight[end] / np.abs(slope_end))
        width = np.abs(chord)
        mass = np.where(flat, 0.5 * (weight[start] + weight[end]), 0.5 * width * (rho_start + rho_end))
        rising = np.where(chord > 0, rho_end - rho_start, rho_start - rho_end)
        tilt = np.where(flat, 0.0, rising / np.maximum(rho_start + rho_end, 1e-300))
        # Identical pieces merged (lexsort: np.unique over rows sorts structured views, 10× slower).
        centre = 0.5 * (g_start + g_end)
        order = np.lexsort((tilt, width, centre))
        pieces = np.stack([centre[order], width[order], tilt[order]], axis=1)
        first = np.ones(order.size, dtype=bool)
        first[1:] = np.any(pieces[1:] != pieces[:-1], axis=1)
        unique = pieces[first]
        merged_mass = np.add.reduceat(mass[order], np.flatnonzero(first)) if order.size else np.zeros(0)
        # The trapezoidal mass of the segments kept: a node where g happens to be 0 inside a line
        # is no atom at 0 (the nodes shifted by half a step meet g = 0 exactly at y = 1 with the
        # optimal label transform).
        trapezoid = 0.5 * float(np.sum(weight[start] + weight[end]))
        merged_mass *= trapezoid / max(float(merged_mass.sum()), 1e-300)
        return unique[:, 0], unique[:, 1], merged_mass, unique[:, 2]


def _merged(g: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct nonzero values of ``g``, ascending, and their summed weights."""
    nonzero = g != 0.0
    values, inverse = np.unique(g[nonzero], return_inverse=True)
    return values, np.bincount(inverse, weights=weight[nonzero])


def _axis_nodes(
    scale: float, rank: int, shifted: bool = False, refine: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Trapezoidal nodes and weights of ``N(0, 1)`` for a direction along which h moves by ``scale``.

    ``shifted`` moves the nodes by half a step (the midpoint rule of the same step); ``refine``
    divides the step.
    """
    step = _H_STEP[rank] / max(1.0, scale)
    count = int(np.ceil(_U_RANGE / step)) * refine
    # Nodes at half steps: none at u = 0, where g may vanish (phase retrieval at w = 0) and a
    # single node would pass for an atom of ν at 0.  The shifted nodes only serve to estimate
    # the error of F(δ) = E[g/(1+gδ)], to which a node with g = 0 adds nothing.
    offsets = np.arange(-count, count + 1) if shifted else np.arange(-count, count) + 0.5
    nodes = offsets * (_U_RANGE / count)
    return nodes, np.exp(-0.5 * nodes**2)


def curvature_law(
    scenario: Scenario, geo: Geometry, *, shifted: bool = False, refine: int = 1
) -> CurvatureLaw:
    """Quadrature of ``(u, g)`` for the scenario's model, labels and loss.

    ``shifted``: the nodes moved by half a step along every axis; ``refine``: the step divided by
    this along every axis (see the module's docstring and :func:`segment_law`).
    """
    axes = [
        _axis_nodes(float(np.linalg.norm(geo.mixing[:, i])), geo.rank, shifted, refine)
        for i in range(geo.rank)
    ]
    if axes:
        grids = np.meshgrid(*[nodes for nodes, _ in axes], indexing="ij")
        u = np.stack([grid.reshape(-1) for grid in grids], axis=1)
        gauss = np.prod(np.meshgrid(*[w for _, w in axes], indexing="ij"), axis=0).reshape(-1)
        keep = gauss > _WEIGHT_FLOOR * gauss.max()
        u, gauss = u[keep], gauss[keep]
    else:
        keep = np.ones(1, dtype=bool)
        u, gauss = np.zeros((1, 0)), np.ones(1)
    h, h_star = geo.offset[:, None] + geo.mixing @ u.T
    y, label_weight = scenario.response_model.label_nodes(h_star)
    g = scenario.curvature(y, h[:, None])
    weight = gauss[:, None] * label_weight
    if np.all(g == g[:, :1]):
        # g does not depend on the label (the logistic loss is even in y): one node per u.
        g, weight = g[:, :1], weight.sum(axis=1, keepdims=True)
    weight = weight / weight.sum()
    labels = g.shape[1]
    following = _following_node(tuple(nodes.size for nodes, _ in axes), keep, g, weight)
    # Flat index of (node k, label j) is k·labels + j; the next node keeps the label.
    neighbour = np.where(following[:, None] >= 0, following[:, None] * labels + np.arange(labels), -1)
    return CurvatureLaw(
        g=g.reshape(-1),
        weight=weight.reshape(-1),
        u=np.repeat(u, labels, axis=0),
        neighbour=neighbour.reshape(-1),
    )


def segment_law(
    scenario: Scenario, geo: Geometry, law: CurvatureLaw
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:meth:`CurvatureLaw.segments` of the quadrature refined to about ``_SEGMENT_NODES`` nodes.

    The segment law is second order (its error in ``δ`` is 1e-3 to 5e-3 at the steps of
    ``_H_STEP``): the step is divided by ``R = ⌊(_SEGMENT_NODES / N)^(1/r)⌋`` (at most
    ``_SEGMENT_REFINE``), ``N`` the nodes of ``law`` and ``r`` its rank, which costs one line of
    nodes ``R`` times as many and a plane ``R²``; the law is only evaluated where the atoms fail.
    """
    nodes = max(law.g.size, 1)
    refine = int(np.clip(np.floor((_SEGMENT_NODES / nodes) ** (1.0 / max(geo.rank, 1))), 1, _SEGMENT_REFINE))
    return (law if refine == 1 else curvature_law(scenario, geo, refine=refine)).segments()


def _following_node(
    shape: tuple[int, ...], keep: np.ndarray, g: np.ndarray, weight: np.ndarray
) -> np.ndarray:
    """For each kept node, the kept node after it along the segment axis, or -1.

    The segment axis is the grid axis along which ``g`` moves most (in mean ``|Δg|``): along an
    axis where ``g`` is constant (the spectral loss does not see ``w``) segments would be atoms.
    """
    if not shape:
        return np.full(1, -1)
    kept_index = np.full(keep.size, -1)
    kept_index[keep] = np.arange(int(keep.sum()))
    grid_index = np.flatnonzero(keep)
    best, best_motion = np.full(grid_index.size, -1), -1.0
    for axis, size in enumerate(shape):
        stride = int(np.prod(shape[axis + 1 :]))
        along = (grid_index // stride) % size
        following = np.full(grid_index.size, -1)
        inside = along < size - 1
        following[inside] = kept_index[grid_index[inside] + stride]
        pairs = following >= 0
        motion = float(np.sum(weight[pairs] * np.abs(g[following[pairs]] - g[pairs])))
        if motion > best_motion:
            best, best_motion = following, motion
    return best
