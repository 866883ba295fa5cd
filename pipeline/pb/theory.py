"""The limiting spectrum of ``H = H₀ + H₁``: Marchenko–Pastur plus Wigner or block product-Wishart.

Pennington & Bahri (ICML 2017), ``shared/theory/pennington_bahri.md``.  ``H₀`` follows the
Marchenko–Pastur law of ratio ``φ`` and mean eigenvalue ``σ``, with R-transform
``σ/(1 − σφz)``; ``H₁`` has R-transform ``2εz`` (``model="wigner"``: the semicircle of variance
``2ε``) or ``εφz/(2 − εφ²z²)`` (``model="product"``, eq. 28).  The Stieltjes transform
``G(z) = ∫ρ(t)/(z − t)dt`` of the free sum solves ``z = R(G) + 1/G``; cleared of denominators this
is ``P(G, z) = A(G) + z B(G) = 0`` with

* wigner (eq. 18, ``σ = 1`` there): ``A = −1 + σ(φ − 1)G − 2εG² + 2εσφG³``, ``B = G − σφG²``;
* product (eq. 30): ``A = −2 − 2σ(1 − φ)G − εφ(1 − φ)G² − εσφ²(φ − 2)G³``,
  ``B = 2G − 2σφG² − εφ²G³ + εσφ³G⁴``.

``σ`` scales ``H₀`` in both models; since ``H/σ`` is the model at ``(ε/σ², φ, σ = 1)``, every
energy scales as ``σ²`` (``ε_c`` included).

How each quantity is computed, and why:

* Roots.  The constant term of ``P`` in ``G`` is ``−1`` (``−2``) for every ``z``, so the
  reversed polynomial in ``w = 1/G`` is monic after one division that never fails, even where the
  leading coefficient in ``G`` vanishes (``ε = 0``; ``z = 0`` in the product model): a root
  ``G = ∞`` is just ``w = 0``.  Its companion matrices, stacked over all abscissae, go through one
  real ``numpy.linalg.eigvals`` call.  On the real axis the physical ``G`` is real outside the
  support, and inside it is the member with ``Im G < 0`` of the one complex-conjugate pair, so
  ``ρ = |Im G|/π = |Im w|/(π|w|²)`` from the pair and ``0`` where all roots are real.  (Checked
  against continuation of the root that behaves as ``1/z`` from ``Im z = 10³`` down to
  ``Im z = 10⁻¹⁰`` over ``φ ∈ [0.05, 10]``, ``ε ∈ [10⁻⁴, 5]``, both models, several bulks
  included: equal to 10⁻⁶ everywhere but at the atom's own Lorentzian; ``tests/test_pb.py``.)
* Edges.  An edge is a point where two roots ``G`` of ``P(·, z)`` merge, i.e. a real root of the
  discriminant in ``z``; equivalently a critical value of the inverse ``z(G) = −A(G)/B(G)``:
  ``z′(G) = 0 ⇔ W(G) = A′B − AB′ = 0`` (implicit differentiation of ``P(G, z(G)) = 0`` gives
  ``P_G = −P_z z′``, and ``P_z = B ≠ 0`` there).  ``W`` has degree 4 (wigner) or 6 (product),
  the degree of the discriminant in ``z``, and its coefficients are exact polynomial products:
  no resultant is evaluated numerically.  Each real root is polished by Newton on ``W`` (hence on
  the pair ``{P = 0, ∂P/∂G = 0}``), and since ``z′ = 0`` there the edge ``z(G*)`` carries only the
  square of the error in ``G*``.  Not every critical value is an edge (other branches have their
  own): between consecutive candidates the support status is constant, so each interval is
  classified at its midpoint, and the edges are where the status changes.
* Point 0.  For ``φ > 1`` ``H₀`` has an atom ``1 − 1/φ`` at 0.  The semicircle has none, so the
  wigner model has no atom for ``ε > 0``; the product model's ``H₁`` has rank ``N/φ`` (an atom
  ``1 − 1/φ``), and by Bercovici–Voiculescu the free sum keeps an atom ``1 − 2/φ`` for ``φ > 2``
  (``G ~ (1 − 2/φ)/z`` is the only balance of eq. 30 as ``z → 0``), in a gap around 0.  For
  ``φ >= 2`` the index is then exactly ``1/(2φ)`` at every ``ε > 0``: ``H = F M Fᵀ`` with ``F``
  of full column rank ``N/φ + 2k`` (``k = N/(2φ)``) and ``M`` of inertia ``(N/φ + k, k)``
  (Sylvester), which ``solve`` reproduces to ~1e-16.  At
  ``ε = 0, φ = 1`` and in the product model at ``ε > 0, φ = 2`` exactly (``G² ~ −1/(4σz)``), 0 is
  a hard edge: ``ρ ~ x^{-1/2}`` for ``x > 0`` (the grid reports ``inf`` there); in the product
  model a gap separates it from a bulk below 0.
* Mass and index.  Each bulk (split at 0 if it straddles 0) is integrated by composite Gauss
  rules, Gauss–Jacobi with the weight ``|x − e|^{±1/2}`` on the panels that end at an edge ``e``,
  so that a square-root or hard edge costs no accuracy.  Panels are bisected until every other
  singular point — the branch points ``z(G*)`` at the complex roots of ``W`` (a near-cusp where two
  bulks have just merged puts a pair within 10⁻² of the axis), the edges across a gap, an atom at
  0 — lies outside the panel's Bernstein ellipse of parameter 4.  The error is estimated by a
  rule of fewer nodes on the same panels.  ``α`` is the mass of the pieces below 0, never a sum
  over the plotting grid; near ``ε_c`` its piece ``[edge_left, 0]`` is one panel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.polynomial import polynomial as poly
from scipy.optimize import brentq

from pipeline.pb._args import integer, model_name, real
from pipeline.pb._quadrature import CHECK_NODES, PANEL_NODES, panel_rule, panels

__all__ = ["PBTheory", "critical_energy", "solve"]

_EPS = float(np.finfo(np.float64).eps)
# Fewer grid points than this cannot give every bulk (up to three) its ends and a few interior
# points.
_MIN_POINTS = 16
# Grid points every bulk gets before the rest is shared out: a narrow bulk (the spread atom near 0
# at φ > 1, width ~ √ε) is resolved however wide the Marchenko–Pastur bulk is.
_MIN_SHARE = 16
# A root of W whose imaginary part is within this fraction of its modulus is a candidate critical
# point: rounding splits a real double root of W (two edges about to merge) into a pair with
# Im ~ √ε_mach |G|.  A spurious candidate only adds a breakpoint whose two sides get one status.
_CANDIDATE_IMAG = 1e-6
# Newton on W stops at a relative step of this size (a few ulps of G*).
_NEWTON_STEP = 8.0 * _EPS
_NEWTON_ITERATIONS = 50
# ... or at a backward residual |W(G)| <= this × Σ|w_k||G|^k (a few roundings of the evaluation).
_NEWTON_RESIDUAL = 16.0 * _EPS
# Critical values closer than this (relative to their size) are one.
_MERGE = 1e-12
# A branch point this close to the axis (relative to its modulus) is on it: rounding moves a real
# critical value of another branch off the axis by a few ulps.
_ON_AXIS = 1e-10
# converged requires: the relative backward residual of P at every root used (eigvals is backward
# stable, ~1e-15), the quadrature error estimate (the 1e-10 accuracy α needs near ε_c) and the mass.
_RESIDUAL_TOLERANCE = 1e-10
_QUADRATURE_TOLERANCE = 1e-10
_MASS_TOLERANCE = 1e-9


@dataclass(frozen=True)
class PBTheory:
    """The limiting spectrum of the Pennington–Bahri Hessian ``H₀ + H₁``.

    Attributes
    ----------
    phi, eps, sigma : float
        The parameters: ratio ``φ``, energy ``ε``, mean eigenvalue ``σ`` of ``H₀``.
    model : str
        ``"wigner"`` or ``"product"``.
    x, density : numpy.ndarray
        The density of the continuous part on ``points`` ascending abscissae covering every bulk:
        the ends of each bulk are grid points (density 0 there, ``inf`` at a hard edge), the others
        cluster at the ends like Chebyshev points.  Only the bulks are covered: gaps lie between
        two consecutive grid points of density 0.
    cumulative : numpy.ndarray
        ``∫_{-∞}^{x} density`` at each grid point (the atom excluded): the trapezoidal rule in the
        Chebyshev angle of each bulk, where the integrand is smooth at square-root and hard edges,
        rescaled to the bulk's mass from the quadrature (a correction below 1e-5 at 400 points, up
        to 4e-3 on the narrow bulks beside 0 of the product model at φ = 2).
    atom_zero : float
        Mass of the atom at 0: ``1 − 1/φ`` at ``ε = 0, φ > 1``; ``1 − 2/φ`` in the product model at
        ``ε > 0, φ > 2``; 0 otherwise.
    index : float
        ``α``, the mass strictly below 0 (the atom at 0 is not counted).
    edges : numpy.ndarray
        ``(n_bulks, 2)``: the ends of every bulk, ascending.
    mass : float
        ``∫ density + atom_zero``, by the graded quadrature: 1 to about 1e-13.
    converged : bool
        Every edge polished, every root's residual, the quadrature error and ``|mass − 1|`` within
        tolerance.
    residual : float
        Largest relative backward residual ``|P|/Σ|coefficient·G^k|`` of the roots used.
    quadrature_error : float
        Estimate of the absolute error of ``mass`` (and a bound for that of ``index``).
    note : str
        What failed, if anything.
    """

    phi: float
    eps: float
    model: str
    sigma: float
    x: np.ndarray
    density: np.ndarray
    cumulative: np.ndarray
    atom_zero: float
    index: float
    edges: np.ndarray
    mass: float
    converged: bool
    residual: float
    quadrature_error: float
    note: str = ""

    @property
    def edge_left(self) -> float:
        """The leftmost edge of the support."""
        return float(self.edges[0, 0])

    @property
    def edge_right(self) -> float:
        """The rightmost edge of the support."""
        return float(self.edges[-1, 1])

    def cdf(self, values: np.ndarray) -> np.ndarray:
        """The limiting distribution function at ``values``, the atom at 0 included.

        ``cumulative`` interpolated linearly: within 5e-5 of the exact distribution at 400 points
        (measured on one to three bulks).
        """
        values = np.asarray(values, dtype=float)
        continuous = np.interp(values, self.x, self.cumulative, left=0.0, right=self.cumulative[-1])
        return continuous + self.atom_zero * (values >= 0)


def solve(
    phi: float, eps: float, model: str = "wigner", *, sigma: float = 1.0, points: int = 400
) -> PBTheory:
    """The limiting spectrum of ``H = H₀ + H₁`` at ratio ``φ`` and energy ``ε``.

    Parameters
    ----------
    phi : float
        ``φ > 0``: parameters per data point, the Marchenko–Pastur ratio of ``H₀``.
    eps : float
        ``ε >= 0``: the energy; ``H₁`` is the semicircle of variance ``2ε`` (``"wigner"``) or the
        block product-Wishart of eq. (28) (``"product"``, spectral variance ``εφ/2``).
    model : {"wigner", "product"}, default "wigner"
        ``"wigner"``: the cubic (18); ``"product"``: the quartic (30) of Sec. 6.
    sigma : float, default 1.0
        ``σ > 0``, the mean eigenvalue of ``H₀`` in both models (eq. 18 is ``σ = 1``); the
        spectrum at ``(φ, ε, σ)`` is ``σ`` times that at ``(φ, ε/σ², 1)``.
    points : int, default 400
        Number of abscissae of the grid, ``>= 16``.

    Returns
    -------
    PBTheory

    Raises
    ------
    pipeline.errors.ScenarioError
        For ``phi <= 0``, ``eps < 0``, ``sigma <= 0``, a non-finite value, an unknown model or
        ``points < 16``, naming the argument.

    See Also
    --------
    critical_energy, pipeline.pb.sample

    Examples
    --------
    >>> theory = solve(0.5, 0.0)
    >>> round(theory.edge_left, 12), round(theory.edge_right, 12), theory.index
    (0.085786437627, 2.914213562373, 0.0)
    >>> round(solve(2.0, 0.0).atom_zero, 12), solve(0.5, 0.1).index > 0
    (0.5, True)
    """
    phi = real(phi, "phi", positive=True)
    eps = real(eps, "eps", positive=False)
    model = model_name(model)
    sigma = real(sigma, "sigma", positive=True)
    points = integer(points, "points", minimum=_MIN_POINTS)

    equation = _Equation.of(phi, eps, model, sigma)
    atom, hard = _zero_point(phi, eps, model)
    support = _support(equation, _zero_singular(eps, model), hard)
    bulk_masses, index, quadrature_error, quadrature_residual = _integrate(equation, support)
    x, density, grid_residual = _grid(equation, support, bulk_masses, points)
    mass = float(bulk_masses.sum()) + atom
    residual = max(grid_residual, quadrature_residual)

    problems = []
    if not support.converged:
        problems.append("an edge's Newton iteration did not converge")
    if not residual <= _RESIDUAL_TOLERANCE:
        problems.append(f"root residual {residual:.1e} > {_RESIDUAL_TOLERANCE:g}")
    if not quadrature_error <= _QUADRATURE_TOLERANCE:
        problems.append(f"quadrature error estimate {quadrature_error:.1e} > {_QUADRATURE_TOLERANCE:g}")
    if not abs(mass - 1.0) <= _MASS_TOLERANCE:
        problems.append(f"mass {mass:.12f} is not 1")
    return PBTheory(
        phi=phi,
        eps=eps,
        model=model,
        sigma=sigma,
        x=x,
        density=density,
        cumulative=_cumulative(x, density, support.edges, bulk_masses),
        atom_zero=atom,
        index=index,
        edges=support.edges,
        mass=mass,
        converged=not problems,
        residual=residual,
        quadrature_error=quadrature_error,
        note="; ".join(problems),
    )


def critical_energy(phi: float, model: str = "wigner", *, sigma: float = 1.0) -> float:
    """The energy ``ε_c`` below which the spectrum has no negative part, in closed form.

    Wigner, eq. (21): ``ε_c = σ²(1 − 20φ − 8φ² + (1 + 8φ)^{3/2})/16``; product, eq. (32):
    ``ε_c = σ²(27 − 18χ − χ² + 8χ^{3/2})/(32φ(1 − φ)³)``, ``χ = 1 + 16φ − 8φ²``.  Both numerators
    factor as ``(3 − s)³(1 + s)`` with ``s = √(1 + 8φ)`` (``s = √χ``) and
    ``3 − s = 8(1 − φ)/(3 + s)`` (``8(1 − φ)²/(3 + s)``), which gives the forms evaluated here,
    free of the cancellation of the printed ones as ``φ → 1``:

    * wigner: ``ε_c = 4σ²(1 − φ)³(1 + s)/(3 + s)³`` (``≈ (2/27)σ²(1 − φ)³`` near ``φ = 1``);
    * product: ``ε_c = 16σ²(1 − φ)³(1 + s)/(φ(3 + s)³)`` (``≈ (8/27)σ²(1 − φ)³``).

    For ``φ >= 1``, ``ε_c = 0`` in both models: ``H₀`` has a kernel of dimension
    ``N(1 − 1/φ)``, on which any ``H₁`` with ``ε > 0`` has eigenvalues of both signs.  (Eq. 32
    is 0/0 at ``φ = 1`` and negative or complex beyond; the product model's density does have
    negative mass at every ``ε > 0`` for ``φ > 1``, as :func:`solve` shows.)

    Parameters
    ----------
    phi : float
        ``φ > 0``.
    model : {"wigner", "product"}, default "wigner"
    sigma : float, default 1.0
        The mean eigenvalue of ``H₀``; ``ε_c`` scales as ``σ²``.

    Returns
    -------
    float

    Raises
    ------
    pipeline.errors.ScenarioError
        For a bad ``phi``, ``model`` or ``sigma``.

    Examples
    --------
    >>> round(critical_energy(0.5), 12), round(critical_energy(0.5, "product"), 12), critical_energy(2.0)
    (0.011271242969, 0.081036709809, 0.0)
    """
    phi = real(phi, "phi", positive=True)
    model = model_name(model)
    sigma = real(sigma, "sigma", positive=True)
    if phi >= 1.0:
        return 0.0
    if model == "wigner":
        s = math.sqrt(1.0 + 8.0 * phi)
        return 4.0 * sigma**2 * (1.0 - phi) ** 3 * (1.0 + s) / (3.0 + s) ** 3
    s = math.sqrt(1.0 + 16.0 * phi - 8.0 * phi**2)
    return 16.0 * sigma**2 * (1.0 - phi) ** 3 * (1.0 + s) / (phi * (3.0 + s) ** 3)


# ----------------------------------------------------------------------------------------------
# Implementation
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Equation:
    """``P(G, z) = A(G) + z B(G)``, coefficients ascending in ``G``, of one length ``d + 1``."""

    a: np.ndarray
    b: np.ndarray

    @classmethod
    def of(cls, phi: float, eps: float, model: str, sigma: float) -> _Equation:
        if model == "wigner":
            a = [-1.0, sigma * (phi - 1.0), -2.0 * eps, 2.0 * eps * sigma * phi]
            b = [0.0, 1.0, -sigma * phi, 0.0]
        else:
            a = [
                -2.0,
                -2.0 * sigma * (1.0 - phi),
                -eps * phi * (1.0 - phi),
                -eps * sigma * phi**2 * (phi - 2.0),
                0.0,
            ]
            b = [0.0, 2.0, -2.0 * sigma * phi, -eps * phi**2, eps * sigma * phi**3]
        return cls(np.array(a), np.array(b))

    def reversed_roots(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The roots ``w = 1/G`` at real ``x`` ``(n, d)`` and the coefficients in ``w`` ``(n, d + 1)``."""
        coefficients = self.a[None, :] + x[:, None] * self.b[None, :]
        in_w = coefficients[:, ::-1]  # in_w[:, k] multiplies w^k
        d = in_w.shape[1] - 1
        companion = np.zeros((x.size, d, d))
        companion[:, 1:, :-1] = np.eye(d - 1)
        companion[:, :, -1] = -in_w[:, :d] / in_w[:, d:]
        return np.linalg.eigvals(companion), in_w

    def density(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """``ρ(x) = |Im G|/π`` of the complex pair (0 without one) and the largest relative residual."""
        if x.size == 0:
            return np.zeros(0), 0.0
        w, in_w = self.reversed_roots(x)
        imag = np.abs(w.imag)
        rows = np.arange(x.size)
        pair = np.argmax(imag, axis=1)
        has_pair = imag[rows, pair] > 0.0
        root = w[rows, pair][has_pair]
        coefficients = in_w[has_pair]
        # One Newton step on the pair's root, kept where it lowers the residual: the companion
        # matrix is backward stable for the monic polynomial, this makes it so for P itself.
        value, slope, size = _horner(coefficients, root)
        with np.errstate(divide="ignore", invalid="ignore"):
            polished = root - value / slope
        better_value, _, better_size = _horner(coefficients, polished)
        improved = np.isfinite(polished) & (np.abs(better_value) < np.abs(value))
        root = np.where(improved, polished, root)
        residual = np.where(improved, np.abs(better_value) / better_size, np.abs(value) / size)
        rho = np.zeros(x.size)
        rho[has_pair] = np.abs(root.imag) / (np.pi * np.abs(root) ** 2)
        return rho, float(residual.max(initial=0.0))

    def critical_values(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidate edges and the branch points of ``G``.

        Returns ``z(G*)`` at the (nearly) real roots of ``W = A′B − AB′``, polished by Newton;
        whether each converged; and ``z(G*)`` at every root of ``W``, complex ones included: the
        branch points of the algebraic function ``G(z)``, where the density's continuation off
        the axis is singular.
        """
        w = poly.polysub(
            poly.polymul(poly.polyder(self.a), self.b), poly.polymul(self.a, poly.polyder(self.b))
        )
        w = np.trim_zeros(w, "b")
        dw = poly.polyder(w)
        roots = np.roots(w[::-1]).astype(complex)
        with np.errstate(divide="ignore", invalid="ignore"):
            branch = -poly.polyval(roots, self.a) / poly.polyval(roots, self.b)
        branch = branch[np.isfinite(branch)]
        g = roots[np.abs(roots.imag) <= _CANDIDATE_IMAG * np.abs(roots)].real
        done = np.zeros(g.size, dtype=bool)
        for _ in range(_NEWTON_ITERATIONS):
            slope = poly.polyval(g, dw)
            active = ~done & (slope != 0.0)
            step = np.zeros_like(g)
            step[active] = poly.polyval(g[active], w) / slope[active]
            g = g - step
            done |= np.abs(step) <= _NEWTON_STEP * np.abs(g)
            if done.all():
                break
        # Next to a double root of W (two edges about to merge) the step stalls at the rounding
        # noise of W/W′, far above the step tolerance: a residual at rounding level is success.
        size = poly.polyval(np.abs(g), np.abs(w))
        done |= np.abs(poly.polyval(g, w)) <= _NEWTON_RESIDUAL * size
        denominator = poly.polyval(g, self.b)
        usable = np.isfinite(g) & (denominator != 0.0)
        values = -poly.polyval(g[usable], self.a) / denominator[usable]
        return values, done[usable], branch


def _horner(coefficients: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's polynomial (ascending) at ``w``: its value, its derivative and ``Σ|c_k||w|^k``."""
    value = np.zeros_like(w)
    slope = np.zeros_like(w)
    size = np.zeros(w.shape)
    modulus = np.abs(w)
    for k in range(coefficients.shape[1] - 1, -1, -1):
        slope = slope * w + value
        value = value * w + coefficients[:, k]
        size = size * modulus + np.abs(coefficients[:, k])
    return value, slope, size


def _zero_point(phi: float, eps: float, model: str) -> tuple[float, bool]:
    """The atom at 0 and whether 0 is a hard edge (see the module docstring)."""
    if eps == 0.0:
        return max(0.0, 1.0 - 1.0 / phi), phi == 1.0
    if model == "wigner":
        return 0.0, False
    return max(0.0, 1.0 - 2.0 / phi), phi == 2.0


def _zero_singular(eps: float, model: str) -> bool:
    """Whether some branch of ``G`` has a pole at ``z = 0``.

    At ``ε = 0`` (the Marchenko–Pastur density's continuation ``∝ 1/x``) and always in the
    product model (eq. 30's leading coefficient ``zεσφ³`` vanishes at 0): the physical branch
    feels it as an atom or hard edge, or near ``φ = 1`` (``φ = 2``) as a steep rise just past an
    edge next to 0.
    """
    return eps == 0.0 or model == "product"


@dataclass(frozen=True)
class _Support:
    """The bulks ``[a, b]``, the exponent of the density at each end and the singular points.

    ``exponents`` is 1/2 at a square-root edge, -1/2 at a hard edge.  ``singular`` holds every
    point (complex) where the density's continuation may not be analytic and which is not
    interior to the support on the axis: the edges, the branch points off the axis, and 0 where
    some branch of ``G`` has a pole there (:func:`_zero_singular`).
    """

    edges: np.ndarray
    exponents: np.ndarray
    singular: np.ndarray
    hard_zero: bool
    converged: bool

    def pieces(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The bulks, each split at 0 if it straddles 0 (exponent 0 there, -1/2 at a hard 0).

        Returns the ends ``(n, 2)``, the exponents ``(n, 2)`` and the bulk of each piece.
        """
        ends: list[tuple[float, float]] = []
        exponents: list[tuple[float, float]] = []
        bulk: list[int] = []
        for i, ((a, b), (ea, eb)) in enumerate(zip(self.edges, self.exponents, strict=True)):
            if a < 0.0 < b:
                middle = -0.5 if self.hard_zero else 0.0
                ends += [(a, 0.0), (0.0, b)]
                exponents += [(ea, middle), (middle, eb)]
                bulk += [i, i]
            else:
                ends.append((a, b))
                exponents.append((ea, eb))
                bulk.append(i)
        return np.array(ends), np.array(exponents), np.array(bulk)


def _support(equation: _Equation, zero_breaks: bool, hard: bool) -> _Support:
    """The bulks, from the candidate edges and the status of each interval between them.

    ``zero_breaks``: 0 is a singular point (:func:`_zero_singular`) and a breakpoint;
    ``hard``: 0 is a hard edge.
    """
    values, converged, branch = equation.critical_values()
    order = np.argsort(values)
    values, converged = values[order], converged[order]
    # Critical values carry relative errors of a few ulps (also the tiny ones next to the pole at
    # 0): nearer ones are one edge, or bound an interval whose midpoint test is rounding noise.
    keep = np.concatenate([[True], np.diff(values) > _MERGE * np.maximum(values[1:], -values[:-1])])
    breaks, ok = values[keep], converged[keep]
    is_zero = np.zeros(breaks.size, dtype=bool)
    if zero_breaks:
        # 0 is exact, and a critical value however near it is a genuine edge (the product model
        # near φ = 2 has one ~(1 − 2/φ)² from the pole at 0): only an exact tie is merged.
        at = int(np.searchsorted(breaks, 0.0))
        if at < breaks.size and breaks[at] == 0.0:
            is_zero[at] = True
        else:
            breaks, ok = np.insert(breaks, at, 0.0), np.insert(ok, at, True)
            is_zero = np.insert(is_zero, at, True)

    inside, _ = equation.density(0.5 * (breaks[1:] + breaks[:-1]))
    status = np.concatenate([[False], inside > 0.0, [False]])
    starts = np.flatnonzero(~status[:-1] & status[1:])
    stops = np.flatnonzero(status[:-1] & ~status[1:])
    edges = np.stack([breaks[starts], breaks[stops]], axis=1)
    exponents = np.where(is_zero[np.stack([starts, stops], axis=1)] & hard, -0.5, 0.5)
    # Critical values on the axis are either edges or lie where another branch turns (analytic
    # for the physical one); those off the axis are kept wherever they are.
    off_axis = branch[np.abs(branch.imag) > _ON_AXIS * np.abs(branch)]
    singular = np.concatenate([edges.ravel(), off_axis, [0.0] if zero_breaks else []]).astype(complex)
    return _Support(edges, exponents, singular, hard, bool(ok[np.concatenate([starts, stops])].all()))


def _grid(
    equation: _Equation, support: _Support, masses: np.ndarray, points: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """``points`` abscissae over the bulks (ends included, Chebyshev clustering) and the density there.

    Beyond ``_MIN_SHARE`` each, a bulk gets points in proportion to the mean of its share of the
    total width and of the total mass: a narrow bulk that holds much mass (the spread atom near 0)
    is resolved as well as a wide one.
    """
    ends, exponents = support.edges, support.exponents
    count = len(ends)
    base = min(_MIN_SHARE, points // count)
    widths = ends[:, 1] - ends[:, 0]
    share = 0.5 * (widths / widths.sum() + masses / max(float(masses.sum()), np.finfo(float).tiny))
    extra = (points - base * count) * share
    counts = base + np.floor(extra).astype(int)
    # Largest remainders get the points that the floor left over.
    leftover = points - int(counts.sum())
    counts[np.argsort(extra - np.floor(extra))[::-1][:leftover]] += 1

    xs, values = [], []
    for (a, b), (ea, eb), n in zip(ends, exponents, counts, strict=True):
        x = a + (b - a) * 0.5 * (1.0 - np.cos(np.linspace(0.0, np.pi, n)))
        x[0], x[-1] = a, b
        value = np.full(n, np.nan)
        value[0], value[-1] = (np.inf if e < 0 else 0.0 for e in (ea, eb))
        xs.append(x)
        values.append(value)
    x, density = np.concatenate(xs), np.concatenate(values)
    interior = np.isnan(density)
    density[interior], residual = equation.density(x[interior])
    return x, density, residual


def _integrate(equation: _Equation, support: _Support) -> tuple[np.ndarray, float, float, float]:
    """The mass of each bulk, the index ``α``, the quadrature error estimate and the largest residual."""
    ends, exponents, bulk = support.pieces()
    piece_of, rules, resolved = [], [], True
    for i, ((a, b), (ea, eb)) in enumerate(zip(ends, exponents, strict=True)):
        pieces_panels, ok = panels(float(a), float(b), support.singular)
        resolved &= ok
        for lo, hi in pieces_panels:
            e_lo, e_hi = (ea if lo == a else 0.0), (eb if hi == b else 0.0)
            rules.append(
                (panel_rule(PANEL_NODES, lo, hi, e_lo, e_hi), panel_rule(CHECK_NODES, lo, hi, e_lo, e_hi))
            )
            piece_of.append(i)
    nodes = np.concatenate([x for pair in rules for x, _ in pair])
    rho, residual = equation.density(nodes)
    fine, check, start = np.zeros(len(ends)), np.zeros(len(ends)), 0
    for i, ((x_fine, w_fine), (x_check, w_check)) in zip(piece_of, rules, strict=True):
        fine[i] += w_fine @ rho[start : start + x_fine.size]
        start += x_fine.size
        check[i] += w_check @ rho[start : start + x_check.size]
        start += x_check.size
    error = float(np.abs(fine - check).sum()) if resolved else np.inf
    index = float(fine[ends[:, 1] <= 0.0].sum())
    return np.bincount(bulk, weights=fine, minlength=len(support.edges)), index, error, residual


def _cumulative(x: np.ndarray, density: np.ndarray, edges: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """``∫_{-∞}^{x_i} ρ`` on the grid of :func:`_grid` (bulk after bulk, Chebyshev points in each).

    With ``x = a + (b − a)(1 − cos θ)/2`` the integrand ``ρ dx/dθ = ρ (b − a) sin θ / 2`` is smooth
    in ``θ`` (``∝ sin²θ`` at a square-root edge, finite at a hard edge, where it takes the value
    of its neighbour): trapezoids in ``θ``, rescaled to the bulk's quadrature mass.
    """
    cumulative = np.empty_like(x)
    start, offset = 0, 0.0
    for (a, b), mass in zip(edges, masses, strict=True):
        stop = start + int(np.flatnonzero(x[start:] == b)[0]) + 1
        n = stop - start
        theta = np.linspace(0.0, np.pi, n)
        values = density[start:stop]
        hard = np.isinf(values)
        integrand = np.where(hard, 0.0, values) * 0.5 * (b - a) * np.sin(theta)
        for end, neighbour in ((0, 1), (-1, -2)):
            if hard[end]:
                integrand[end] = integrand[neighbour]
        steps = 0.5 * (integrand[1:] + integrand[:-1]) * (np.pi / (n - 1))
        partial = np.concatenate([[0.0], np.cumsum(steps)])
        cumulative[start:stop] = offset + partial * (mass / partial[-1] if partial[-1] > 0 else 1.0)
        start, offset = stop, offset + mass
    return cumulative


def _left_edge(phi: float, eps: float, model: str, sigma: float) -> float:
    """The leftmost edge of the support alone (no grid, no quadrature)."""
    _, hard = _zero_point(phi, eps, model)
    support = _support(_Equation.of(phi, eps, model, sigma), _zero_singular(eps, model), hard)
    return float(support.edges[0, 0])


def _edge_crossing_energy(phi: float, model: str = "wigner", *, sigma: float = 1.0) -> float:
    """The ``ε`` at which the left edge of the support reaches 0, by root finding (0 for ``φ >= 1``).

    The independent check of :func:`critical_energy`: the left edge ``σ(1 − √φ)² > 0`` at
    ``ε = 0`` decreases with ``ε``; the bracket doubles until it is negative, then Brent's method
    runs to a relative tolerance of 4 ulps.
    """
    phi = real(phi, "phi", positive=True)
    model = model_name(model)
    sigma = real(sigma, "sigma", positive=True)
    if phi >= 1.0:
        return 0.0
    high = sigma**2
    while _left_edge(phi, high, model, sigma) >= 0.0:
        high *= 2.0
    return float(brentq(lambda e: _left_edge(phi, e, model, sigma), 0.0, high, xtol=1e-300, rtol=4.0 * _EPS))
