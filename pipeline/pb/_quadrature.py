"""Composite Gauss–Jacobi quadrature for densities with algebraic end singularities.

A piece ``[a, b]`` of a bulk is bisected into panels until every singular point of the density's
analytic continuation (given as complex numbers; those at ``a`` or ``b`` themselves excepted) lies
outside each panel's Bernstein ellipse of parameter ``_BERNSTEIN``.  A panel that ends at ``a``
(``b``) carries the Jacobi weight ``(x − a)^e`` of that end's exponent (1/2 at a square-root
edge, -1/2 at a hard edge, 0 at a regular point), divided back out of the weights, so that the
rule integrates ``ρ`` itself.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.special import roots_jacobi

__all__ = ["CHECK_NODES", "PANEL_NODES", "panel_rule", "panels"]

_EPS = float(np.finfo(np.float64).eps)
# Composite quadrature: panels are bisected until every singular point of the density's
# continuation (branch points z(G*) off the axis, other edges, an atom or hard edge at 0) has a
# Bernstein-ellipse parameter >= _BERNSTEIN with respect to the panel; Gauss rules of
# PANEL_NODES points then err by about _BERNSTEIN^(-2·14) ≈ 1e-17 of the panel's mass, and the
# CHECK_NODES rule on the same panels (4^(-20) ≈ 1e-12) is the error estimate.
_BERNSTEIN = 4.0
PANEL_NODES = 14
CHECK_NODES = 10
# A panel is not bisected once its width is this many ulps of its position: bisection could not
# separate it from a singular point any further (reported as an infinite error estimate).  The
# singular points never lie inside a piece on the axis, so this only stops a runaway.
_MIN_PANEL_ULPS = 16.0


@functools.lru_cache(maxsize=32)
def _jacobi(n: int, alpha: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Jacobi rule of ``n`` points for the weight ``(1 − t)^α (1 + t)^β`` on [-1, 1]."""
    t, w = roots_jacobi(n, alpha, beta)
    return t, w


def panel_rule(n: int, lo: float, hi: float, e_lo: float, e_hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of ``∫_lo^hi ρ`` when ``ρ ~ (x − lo)^e_lo (hi − x)^e_hi × analytic``."""
    t, w = _jacobi(n, e_hi, e_lo)
    half = 0.5 * (hi - lo)
    x = lo + half * (1.0 + t)
    # The Jacobi weight is divided back out of ρ: weight_i ρ(x_i)/((x_i − lo)^e_lo (hi − x_i)^e_hi).
    weight = w * half ** (1.0 + e_lo + e_hi) / ((x - lo) ** e_lo * (hi - x) ** e_hi)
    return x, weight


def _bernstein(points: np.ndarray, lo: float, hi: float) -> float:
    """The smallest Bernstein-ellipse parameter ``|t + √(t² − 1)|`` of ``points`` for ``[lo, hi]``."""
    if points.size == 0:
        return np.inf
    t = (2.0 * points - (lo + hi)) / (hi - lo)
    return float(np.abs(t + np.sqrt(t - 1.0) * np.sqrt(t + 1.0)).min())


def panels(a: float, b: float, singular: np.ndarray) -> tuple[list[tuple[float, float]], bool]:
    """Bisect ``[a, b]`` until every singular point is far enough from each panel.

    A singular point at an end of ``[a, b]`` is left to that end's Jacobi weight on the panel
    that touches it.  Returns the panels, ascending, and whether none hit the width limit.
    """
    inner = singular[(singular != a) & (singular != b)]
    at_a, at_b = singular[singular == a], singular[singular == b]
    done: list[tuple[float, float]] = []
    resolved = True
    stack = [(a, b)]
    while stack:
        lo, hi = stack.pop()
        others = np.concatenate([inner, at_a if lo != a else [], at_b if hi != b else []])
        floor = hi - lo <= _MIN_PANEL_ULPS * _EPS * max(abs(lo), abs(hi))
        if floor or _bernstein(others, lo, hi) >= _BERNSTEIN:
            resolved &= not floor
            done.append((lo, hi))
        else:
            middle = 0.5 * (lo + hi)
            stack += [(middle, hi), (lo, middle)]
    return done, resolved
