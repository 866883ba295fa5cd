"""Isolated eigenvalues and their eigenvector alignments (Theorems 2 and 3 of Liao–Mahoney).

Outside the bulk, ``Σ_f − λI = B(λ) + UΛUᵀ`` with ``B = F(δ)C − λI`` invertible, so ``λ`` is the
limit of an isolated eigenvalue exactly where

    G(λ) = I + Λ(δ(λ)) Uᵀ B(λ)⁻¹ U,     det G(λ) = 0,

``Λ = E[f [[1, uᵀ], [u, uuᵀ − I]]]`` and ``f = g/(1 + gδ)`` (``shared/theory/glm.md``).  ``G`` is real
there; its zeros are bracketed by sign changes of ``det G`` on a scan of every gap of the support
(clustered at the edges, where spikes are born) and refined by Brent's method.

For a unit vector ``a`` the squared cosine with the isolated eigenvector is minus the residue of
``aᵀQ̄(z)a`` at ``λ``; with Woodbury and ``G(z)⁻¹ ≈ v_r v_lᵀ / ((z − λ) v_lᵀG'(λ)v_r)``:

    |aᵀû|² = (aᵀB⁻¹U v_r)(v_lᵀ Λ UᵀB⁻¹a) / (v_lᵀ G'(λ) v_r),

``G' = dG/dz`` including ``δ'(z) = −∂_zΦ / ∂_δΦ``.  The theorem needs ν (the law of ``g``) bounded;
callers check that first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from pipeline.theory.bulk import BulkEquation, Support
from pipeline.theory.law import CurvatureLaw, Geometry

__all__ = ["Spike", "edge_determinant", "find_spikes"]

# Scan points per gap: uniform ones, plus geometric ones approaching each finite end down to
# _EDGE_APPROACH of the gap's width (closer than that, a spike cannot be told from the edge).
_SCAN_UNIFORM = 48
_SCAN_GEOMETRIC = 12
_EDGE_APPROACH = 1e-9
# det G(λ) = 0 is accepted when G's smallest singular value is this small relative to its largest.
_SINGULAR_TOLERANCE = 1e-7
_ROOT_TOLERANCE = 1e-14
_NEWTON_STEPS = 30
# Newton stops at a residual of rounding size; a point is kept if its residual is below the
# looser _ACCEPT_TOLERANCE (near an edge ∂Φ/∂δ → 0 and the last digits do not settle).
_RESIDUAL_TOLERANCE = 1e-14
_STEP_TOLERANCE = 1e-10
_ACCEPT_TOLERANCE = 1e-10
# Outside the support δ(λ + iη) is real but for O(η) = O(1e-10): a scan point is in a gap when
# Im δ is below this fraction of |δ|.
_REAL_TOLERANCE = 1e-6
# Rounding allowance, relative to |δ|, on the monotonicity of the physical δ(λ) across a gap.
_MONOTONE_SLACK = 1e-9


@dataclass(frozen=True)
class Spike:
    """One isolated eigenvalue: its location and squared cosines with each target vector."""

    location: float
    align: dict[str, float]


class _SpikeEquation:
    """``G(λ)`` and friends on the real axis, with the full quadrature of ``(u, g)``."""

    def __init__(self, geo: Geometry, law: CurvatureLaw, fine: BulkEquation) -> None:
        self.geo, self.fine = geo, fine
        self.g, self.weight = law.g, law.weight
        r = geo.rank
        u = law.u
        # K(u) = [[1, uᵀ], [u, uuᵀ − I]], restricted to the columns present in U.
        kernel = np.zeros((u.shape[0], 1 + r, 1 + r))
        kernel[:, 0, 0] = 1.0
        kernel[:, 0, 1:] = u
        kernel[:, 1:, 0] = u
        kernel[:, 1:, 1:] = u[:, :, None] * u[:, None, :] - np.eye(r)
        if not geo.has_mu:
            kernel = kernel[:, 1:, 1:]
        self.kernel = kernel * self.weight[:, None, None]
        self.t_reduced = geo.t
        self.size = kernel.shape[1]

    def delta(self, lam: np.ndarray, guess: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Real ``δ(λ)`` by Newton's method from ``guess``; returns it and a convergence mask.

        A step never crosses a pole of ``F``; the solution is accepted when the residual is at
        rounding level and ``δ`` lies outside the poles' hull (a point outside the support).
        """
        delta = guess.astype(float).copy()
        active = np.ones(delta.shape, dtype=bool)
        for _ in range(_NEWTON_STEPS):
            current = delta[active]
            phi, dphi = self.fine.residual(current, lam[active])
            solved = np.abs(phi) <= _RESIDUAL_TOLERANCE * np.abs(current)
            step = np.where(solved, 0.0, phi / dphi)
            candidate = current - step
            for _ in range(40):
                crossed = ~self.fine.same_branch(current, candidate)
                if not crossed.any():
                    break
                step[crossed] *= 0.5
                candidate[crossed] = current[crossed] - step[crossed]
            delta[active] = candidate
            # Near an edge ∂Φ/∂δ → 0 and the residual may never reach rounding level; a step
            # below _STEP_TOLERANCE |δ| leaves the iterate accurate to rounding (Newton's
            # convergence is quadratic), and acceptance is then decided by the residual below.
            settled = solved | (np.abs(step) <= _STEP_TOLERANCE * np.abs(candidate))
            active[active] = ~(settled | ~np.isfinite(candidate))
            if not active.any():
                break
        phi, _ = self.fine.residual(delta, lam)
        ok = np.isfinite(delta) & (np.abs(phi) <= _ACCEPT_TOLERANCE * np.maximum(np.abs(delta), 1e-300))
        return delta, ok & self.fine.outside_poles(delta)

    def parts(self, lam: float, delta: float, *, derivative: bool = True) -> dict[str, np.ndarray]:
        """``G``, ``Λ``, ``B⁻¹`` (diagonal) and ``dG/dz`` at a real point outside the support.

        ``derivative=False`` leaves out ``dG/dz``, which is infinite at an edge (``δ'`` is).
        """
        f = self.g / (1.0 + self.g * delta)
        lam_matrix = np.tensordot(f, self.kernel, axes=1)
        f1 = float(f @ self.weight)
        t, u_mat = self.t_reduced, self.geo.low_rank
        b = 1.0 / (t * f1 - lam)
        m = u_mat.T @ (b[:, None] * u_mat)
        g_matrix = np.eye(self.size) + lam_matrix @ m
        if not derivative:
            return {"G": g_matrix, "Lambda": lam_matrix, "b": b}
        lam_delta = np.tensordot(-(f**2), self.kernel, axes=1)
        f2 = float(f**2 @ self.weight)
        # δ'(z) from Φ(δ(z), z) = 0, over the distinct eigenvalues of C.
        denominator = self.fine.t * f1 - lam
        phi_z = -self.fine.c * np.sum(self.fine.pi * self.fine.t / denominator**2)
        phi_delta = 1.0 - self.fine.c * np.sum(self.fine.pi * self.fine.t**2 * f2 / denominator**2)
        d_delta = -phi_z / phi_delta
        d_b = (t * f2 * d_delta + 1.0) * b**2
        d_g = lam_delta * d_delta @ m + lam_matrix @ (u_mat.T @ (d_b[:, None] * u_mat))
        return {"G": g_matrix, "Lambda": lam_matrix, "b": b, "dG": d_g}

    def determinant(self, lam: float, delta: float) -> float:
        return float(np.linalg.det(self.parts(lam, delta, derivative=False)["G"]))

    def determinants(self, lam: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """``det G`` at many real points at once (as :meth:`determinant`, vectorised)."""
        f = self.g / (1.0 + np.multiply.outer(delta, self.g))
        lam_matrix = (f @ self.kernel.reshape(self.g.size, -1)).reshape(len(lam), self.size, self.size)
        b = 1.0 / (np.multiply.outer(f @ self.weight, self.t_reduced) - lam[:, None])
        u_mat = self.geo.low_rank
        m = (u_mat.T[None] * b[:, None, :]) @ u_mat
        return np.linalg.det(np.eye(self.size) + lam_matrix @ m)

    def alignment(self, lam: float, delta: float, target: np.ndarray) -> float:
        parts = self.parts(lam, delta)
        left, _, right_t = np.linalg.svd(parts["G"])
        v_r, v_l = right_t[-1], left[:, -1]
        bu = parts["b"][:, None] * self.geo.low_rank
        numerator = (target @ bu @ v_r) * (v_l @ parts["Lambda"] @ (bu.T @ target))
        return float(numerator / (v_l @ parts["dG"] @ v_r))

    def is_root(self, lam: float, delta: float) -> bool:
        singular = np.linalg.svd(self.parts(lam, delta, derivative=False)["G"], compute_uv=False)
        return bool(singular[-1] <= _SINGULAR_TOLERANCE * max(singular[0], 1.0))


def _scan_points(lo: float, hi: float, lo_is_edge: bool, hi_is_edge: bool) -> np.ndarray:
    width = hi - lo
    parts = [lo + width * (np.arange(1, _SCAN_UNIFORM + 1) / (_SCAN_UNIFORM + 1))]
    approach = np.logspace(np.log10(_EDGE_APPROACH), -1.5, _SCAN_GEOMETRIC)
    if lo_is_edge:
        parts.append(lo + width * approach)
    if hi_is_edge:
        parts.append(hi - width * approach)
    return np.unique(np.concatenate(parts))


def _march(
    equation: _SpikeEquation, lam: np.ndarray, delta: np.ndarray, real: np.ndarray, order: np.ndarray
) -> None:
    """Real ``δ`` of the full law along ``lam[order]`` by continuation, from ``order[0]``.

    Updates ``delta`` and ``real`` in place; stops where Newton's method fails, or where it
    lands on another real root: in a gap the physical ``δ(λ)`` increases with ``λ``, so it
    must move in the direction of the march.
    """
    current = delta[order[0]]
    direction = np.sign(order[-1] - order[0])
    for step, index in enumerate(order):
        value, ok = equation.delta(lam[index : index + 1], np.array([current]))
        # The first point only moves from the compressed law's δ to the full law's.
        backwards = step > 0 and direction * (value[0] - current) < -_MONOTONE_SLACK * abs(current)
        if not ok[0] or backwards:
            break
        current = delta[index] = value[0]
        real[index] = True


def _within_edges(delta: np.ndarray, lo_delta: float, hi_delta: float) -> np.ndarray:
    """Whether each real ``δ`` lies between the gap's edge values (NaN: no bound on that side).

    ``δ(λ)`` increases across a gap, from its value at the lower edge to that at the upper one;
    a real root outside that range is another, non-physical root of the fixed-point equation
    (one can lie close to an edge, where the compressed law's scan or the march may land on it).
    """
    slack = _MONOTONE_SLACK * np.abs(delta)
    ok = np.ones(delta.shape, dtype=bool)
    if np.isfinite(lo_delta):
        ok &= delta >= lo_delta - slack
    if np.isfinite(hi_delta):
        ok &= delta <= hi_delta + slack
    return ok


def _gap_roots(
    equation: _SpikeEquation, lam: np.ndarray, delta: np.ndarray, *, polished: bool
) -> tuple[list[tuple[float, float]], bool]:
    """Roots of det G between scan points; also whether a bracket failed under the full law."""
    if lam.size < 2:
        return [], False
    det = equation.determinants(lam, delta)
    brackets = np.flatnonzero(np.sign(det[1:]) * np.sign(det[:-1]) < 0)
    if not polished and brackets.size:
        # The scan's δ came from the compressed law: solve the full law at every bracket's ends
        # at once, and give up on a bracket where that fails (before any root-finding on it).
        ends = np.concatenate([brackets, brackets + 1])
        full, ok = equation.delta(lam[ends], delta[ends])
        ends_det = np.where(ok, equation.determinants(lam[ends], full), np.nan)
        delta, det = delta.copy(), det.copy()
        delta[ends], det[ends] = full, ends_det
    roots, lost = [], False
    for i in brackets:
        a, b, da, db = lam[i], lam[i + 1], delta[i], delta[i + 1]

        def delta_at(x: float, a: float = a, b: float = b, da: float = da, db: float = db) -> float:
            start = da + (db - da) * (x - a) / (b - a)
            value, _ = equation.delta(np.array([x]), np.array([start]))
            return float(value[0])

        def det_at(x: float) -> float:
            return equation.determinant(x, delta_at(x))

        f_a, f_b = det[i], det[i + 1]
        if not np.sign(f_a) * np.sign(f_b) < 0:
            lost = True
            continue
        root = brentq(
            det_at,
            a,
            b,
            xtol=_ROOT_TOLERANCE * max(abs(a), abs(b), 1.0),
            rtol=4 * np.finfo(float).eps,
        )
        root_delta = delta_at(root)
        if equation.is_root(root, root_delta):
            roots.append((float(root), root_delta))
    return roots, lost


def find_spikes(
    geo: Geometry,
    law: CurvatureLaw,
    fine: BulkEquation,
    coarse: BulkEquation,
    support: Support,
    bounds: tuple[float, float],
    scale: float,
    targets: dict[str, np.ndarray | None],
) -> list[Spike]:
    """All isolated eigenvalues in the gaps of the support, with their alignments.

    Parameters
    ----------
    support : Support
        The bulks, ascending, and the coarse solution that gives starting points.
    bounds : (float, float)
        No eigenvalue lies outside: the ends of the outer gaps.
    targets : dict of str to numpy.ndarray
        Unit vectors in the reduced basis (``None`` entries are skipped and give NaN).
    """
    equation = _SpikeEquation(geo, law, fine)
    ends = [bounds[0]] + [v for interval in support.intervals for v in interval] + [bounds[1]]
    end_deltas = [np.nan] + [v for pair in support.edge_delta for v in pair] + [np.nan]
    gaps = []
    for k in range(0, len(ends), 2):
        lo, hi = ends[k], ends[k + 1]
        lo_edge, hi_edge = k > 0, k + 2 < len(ends)
        lo_delta, hi_delta = end_deltas[k], end_deltas[k + 1]
        # The atom at 0 (c > 1) is a point of the spectrum: split a gap that contains it.
        if fine.atom_zero > 0 and lo < 0 < hi:
            gaps += [(lo, 0.0, lo_edge, True, lo_delta, np.nan), (0.0, hi, True, hi_edge, np.nan, hi_delta)]
        elif hi > lo:
            gaps.append((lo, hi, lo_edge, hi_edge, lo_delta, hi_delta))
    spikes: list[Spike] = []
    for lo, hi, lo_edge, hi_edge, lo_delta, hi_delta in gaps:
        lam = _scan_points(lo, hi, lo_edge, hi_edge)
        # The scan only looks for sign changes of det G, and δ from the compressed law is enough
        # there (it differs from the full law's by the compression error).  Only if a bracket
        # does not survive the full law (a root within that error of an edge) is the whole gap
        # scanned again with the full law.
        guess, converged = support.solve_near(coarse, lam, scale, inside=False)
        real = converged & (np.abs(guess.imag) <= _REAL_TOLERANCE * np.abs(guess))
        real &= fine.outside_poles(guess.real)
        delta = guess.real
        if not real.any():
            continue
        # Within the compression error of an edge the compressed law may still be in its bulk,
        # while a spike just born sits there: march to each edge with the full law.
        if hi_edge:
            _march(equation, lam, delta, real, np.arange(np.flatnonzero(real)[-1], lam.size))
        if lo_edge:
            _march(equation, lam, delta, real, np.arange(np.flatnonzero(real)[0], -1, -1))
        real &= _within_edges(delta, lo_delta, hi_delta)
        roots, lost = _gap_roots(equation, lam[real], delta[real], polished=False)
        if lost:
            delta, ok = equation.delta(lam[real], guess.real[real])
            roots, _ = _gap_roots(equation, lam[real][ok], delta[ok], polished=True)
        for root, root_delta in roots:
            align = {
                name: (np.nan if vector is None else equation.alignment(root, root_delta, vector))
                for name, vector in targets.items()
            }
            spikes.append(Spike(root, align))
    return sorted(spikes, key=lambda spike: spike.location)


def edge_determinant(
    geo: Geometry, law: CurvatureLaw, fine: BulkEquation, edge: float, delta: float
) -> float:
    """``det G`` at an edge of the support, from the real ``δ`` there.

    ``det G(λ)`` is continuous up to an edge, and a spike is born at the edge exactly when one
    of its zeros reaches it: as a parameter of the scenario moves, ``det G(edge)`` changes sign
    where an isolated eigenvalue appears (or is swallowed) on that side.  A root of this
    function in the parameter is the phase transition, to the precision of the root-finder.
    """
    return _SpikeEquation(geo, law, fine).determinant(edge, delta)
