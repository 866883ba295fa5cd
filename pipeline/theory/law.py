"""The law of the curvature ``g`` and the low-rank geometry it depends on.

``g = ℓ''(y, wᵀx)`` depends on ``x`` only through ``u = Ũᵀz`` (``r ≤ 2`` Gaussian coordinates),
where ``C^{1/2}[w, w*] = Ũ S Vᵀ`` is a thin SVD and ``x = μ + C^{1/2}z`` (``shared/theory/glm.md``).
This module turns a scenario into

* :class:`Geometry`: every vector of the problem in the reduced basis ``(e₁⁽ʲ⁾, e₂⁽ʲ⁾)_j``, where
  ``C`` is diagonal, and the matrix ``U = [μ, C^{1/2}Ũ]`` of the rank-``(1 + r)`` part of ``Σ_f``;
* :class:`CurvatureLaw`: a quadrature of the joint law of ``(u, g)``, with which every expectation
  of the theory (``F(δ) = E[g/(1+gδ)]``, the matrix ``Λ``) is a weighted sum.

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

__all__ = ["CurvatureLaw", "Geometry", "curvature_law", "geometry"]

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
    """

    g: np.ndarray
    weight: np.ndarray
    u: np.ndarray

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


def _merged(g: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct nonzero values of ``g``, ascending, and their summed weights."""
    nonzero = g != 0.0
    values, inverse = np.unique(g[nonzero], return_inverse=True)
    return values, np.bincount(inverse, weights=weight[nonzero])


def _axis_nodes(scale: float, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Trapezoidal nodes and weights of ``N(0, 1)`` for a direction along which h moves by ``scale``."""
    step = _H_STEP[rank] / max(1.0, scale)
    count = int(np.ceil(_U_RANGE / step))
    # Nodes at half steps: none at u = 0, where g may vanish (phase retrieval at w = 0) and a
    # single node would pass for an atom of ν at 0.
    nodes = (np.arange(-count, count) + 0.5) * (_U_RANGE / count)
    return nodes, np.exp(-0.5 * nodes**2)


def curvature_law(scenario: Scenario, geo: Geometry) -> CurvatureLaw:
    """Quadrature of ``(u, g)`` for the scenario's model, labels and loss."""
    axes = [_axis_nodes(float(np.linalg.norm(geo.mixing[:, i])), geo.rank) for i in range(geo.rank)]
    if axes:
        grids = np.meshgrid(*[nodes for nodes, _ in axes], indexing="ij")
        u = np.stack([grid.reshape(-1) for grid in grids], axis=1)
        gauss = np.prod(np.meshgrid(*[w for _, w in axes], indexing="ij"), axis=0).reshape(-1)
        keep = gauss > _WEIGHT_FLOOR * gauss.max()
        u, gauss = u[keep], gauss[keep]
    else:
        u, gauss = np.zeros((1, 0)), np.ones(1)
    h, h_star = geo.offset[:, None] + geo.mixing @ u.T
    y, label_weight = scenario.response_model.label_nodes(h_star)
    g = scenario.curvature(y, h[:, None])
    weight = gauss[:, None] * label_weight
    if np.all(g == g[:, :1]):
        # g does not depend on the label (the logistic loss is even in y): one node per u.
        g, weight = g[:, :1], weight.sum(axis=1, keepdims=True)
    labels = g.shape[1]
    return CurvatureLaw(
        g=g.reshape(-1),
        weight=(weight / weight.sum()).reshape(-1),
        u=np.repeat(u, labels, axis=0),
    )
