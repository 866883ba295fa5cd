"""Monte Carlo of the Pennington–Bahri model: draw ``H = H₀ + H₁`` of dimension ``N``, diagonalise it.

The matrices realise the laws of :mod:`pipeline.pb.theory` exactly in the limit ``N → ∞``:

* ``H₀ = (σ/m) AAᵀ`` with ``A`` an ``N × m`` standard normal matrix and ``m = round(N/φ)`` data
  columns: Marchenko–Pastur of ratio ``N/m → φ`` and mean eigenvalue ``σ`` (``E tr H₀/N = σ``),
  an atom ``1 − m/N`` at 0 when ``m < N``.  It is orthogonally invariant, hence asymptotically free
  from the independent ``H₁``.
* ``model="wigner"``: ``H₁`` is GOE with off-diagonal variance ``2ε/N`` (diagonal ``4ε/N``): the
  semicircle of variance ``2ε``, radius ``2√(2ε)``.
* ``model="product"``: ``H₁ = [[0, H₁₂], [H₁₂ᵀ, 0]]`` with blocks ``n₁ = ⌊N/2⌋``,
  ``n₂ = N − n₁`` and ``H₁₂ = (√(2ε)/(2k)) ÊX̂ᵀ``, ``Ê``, ``X̂`` standard normal ``n₁ × k`` and
  ``n₂ × k``, ``k = max(1, round(N/(2φ)))`` — the paper's ``H₁₂ = Iₙ ⊗ êx̂ᵀ/m`` with residuals
  ``ê`` of variance ``2ε`` and ``k = m/2`` columns (the Kronecker copies repeat each singular value
  and leave the law alone).  The eigenvalues of ``H₁`` are ``±`` the singular values of ``H₁₂``;
  with ``n₁/k → φ``: ``E tr H₁²/N → εφ/2`` and ``E tr H₁⁴/N → ε²φ²(2 + φ)/4``, the free cumulants
  ``κ₂ = εφ/2``, ``κ₄ = ε²φ³/4`` of R-transform (28) ``εφz/(2 − εφ²z²)``, and the spectrum matches
  the density of the quartic (30) (``tests/test_pb.py``).  For ``φ > 1`` (``k < n₁``) ``H₁`` has
  rank ``2k ≈ N/φ``.  An odd ``N`` makes the blocks differ by one: one more zero eigenvalue of
  ``H₁``, a rank-one change that the limit does not see.

The generator is ``default_rng(SeedSequence(seed))``; it draws ``A`` (as ``m × N``), then
``B`` (``N × N``, wigner) or ``Ê`` then ``X̂`` (product), nothing for ``H₁`` when ``ε = 0``.  So a
seed gives the same ``H₀`` at every ``ε`` and the same normalised ``H₁`` at every ``ε > 0``.  Only the
upper triangle is formed: ``H₀`` by one BLAS ``dsyrk`` on the Fortran-ordered view ``Aᵀ`` of the
draw (no copy), then ``H₁`` added in place, then LAPACK ``dsyevd`` (eigenvalues only: ``dsterf``),
overwriting the matrix.  Results are bit-identical for one BLAS build and thread count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy.linalg import blas

from pipeline.errors import ScenarioError
from pipeline.pb._args import SeedLike, integer, model_name, real, seed_sequence

__all__ = ["ZERO_TOLERANCE", "PBSample", "sample"]

# An eigenvalue with |λ| <= ZERO_TOLERANCE·N·max|λ| counts as an exact zero (neither negative nor
# positive): a backward-stable eigensolver moves every eigenvalue by up to about ε_mach·N·‖H‖, so
# the N − rank zeros of a rank-deficient H (ε = 0 at φ > 1, the product model at φ > 2) come out
# with either sign at that size.  ZERO_TOLERANCE is the machine epsilon of float64: the rule of
# pipeline.montecarlo.
ZERO_TOLERANCE = float(np.finfo(np.float64).eps)


@dataclass(frozen=True, eq=False)
class PBSample:
    """The spectrum of one Pennington–Bahri matrix.

    Attributes
    ----------
    eigenvalues : numpy.ndarray
        All ``N`` eigenvalues, ascending, read-only.
    index : float
        Fraction of eigenvalues ``< −zero_tolerance`` (exact zeros are not negative).
    zero_fraction : float
        Fraction with ``|λ| <= zero_tolerance``: the empirical atom at 0.
    zero_tolerance : float
        ``ZERO_TOLERANCE · N · max|λ|``.
    phi, eps, sigma : float
        The parameters.
    model : str
        ``"wigner"`` or ``"product"``.
    N, m : int
        Dimension and number of data columns of ``H₀`` (``m = round(N/φ)``).
    """

    eigenvalues: np.ndarray
    index: float
    zero_fraction: float
    zero_tolerance: float
    phi: float
    eps: float
    sigma: float
    model: str
    N: int
    m: int


def sample(
    phi: float, eps: float, N: int, seed: SeedLike, model: str = "wigner", *, sigma: float = 1.0
) -> PBSample:
    """Draw one ``N × N`` matrix ``H₀ + H₁`` and return its spectrum.

    Parameters
    ----------
    phi : float
        ``φ > 0``; ``H₀`` has ``m = round(N/φ) >= 1`` data columns.
    eps : float
        ``ε >= 0``.
    N : int
        Dimension, ``>= 2``.
    seed : int, sequence of int or numpy.random.SeedSequence
        Entropy of ``default_rng(SeedSequence(seed))``, e.g. ``(sweep_seed, point, trial)``.
    model : {"wigner", "product"}, default "wigner"
        ``H₁`` GOE, or the block off-diagonal product (see the module docstring).
    sigma : float, default 1.0
        ``σ > 0``, the mean eigenvalue of ``H₀``.

    Returns
    -------
    PBSample

    Raises
    ------
    pipeline.errors.ScenarioError
        For a bad argument (named), including ``N`` so small against ``φ`` that ``m`` is 0.

    See Also
    --------
    pipeline.pb.solve

    Examples
    --------
    >>> s = sample(0.5, 0.0, 50, seed=(0, 1))
    >>> s.eigenvalues.shape, s.m, s.index, bool(s.eigenvalues[0] > 0)
    ((50,), 100, 0.0, True)
    """
    phi = real(phi, "phi", positive=True)
    eps = real(eps, "eps", positive=False)
    N = integer(N, "N", minimum=2)
    model = model_name(model)
    sigma = real(sigma, "sigma", positive=True)
    m = round(N / phi)
    if m < 1:
        raise ScenarioError("N", f"N = {N} at phi = {phi:g} gives m = round(N/phi) = 0 data columns")
    rng = np.random.default_rng(seed_sequence(seed))

    draw = rng.standard_normal((m, N))
    # dsyrk on the Fortran-ordered N × m view draw.T: σ/m · AAᵀ into the upper triangle, no copy.
    hessian = blas.dsyrk(sigma / m, draw.T, trans=0, lower=0)
    del draw
    if eps > 0.0:
        if model == "wigner":
            _add_goe(hessian, rng, eps)
        else:
            _add_product(hessian, rng, eps, phi)
    eigenvalues = scipy.linalg.eigvalsh(
        hessian, lower=False, overwrite_a=True, check_finite=False, driver="evd"
    )
    tolerance = ZERO_TOLERANCE * N * float(np.max(np.abs(eigenvalues)))
    eigenvalues.flags.writeable = False
    return PBSample(
        eigenvalues=eigenvalues,
        index=int(np.count_nonzero(eigenvalues < -tolerance)) / N,
        zero_fraction=int(np.count_nonzero(np.abs(eigenvalues) <= tolerance)) / N,
        zero_tolerance=tolerance,
        phi=phi,
        eps=eps,
        sigma=sigma,
        model=model,
        N=N,
        m=m,
    )


def _add_goe(hessian: np.ndarray, rng: np.random.Generator, eps: float) -> None:
    """Upper triangle ``+=`` GOE of off-diagonal variance ``2ε/N`` (diagonal ``4ε/N``)."""
    n = hessian.shape[0]
    noise = rng.standard_normal((n, n))
    scale = math.sqrt(2.0 * eps / n)
    # Only the upper triangle is read by the eigensolver: its entries of ``noise`` are i.i.d., so
    # adding the whole matrix costs one pass and no symmetrisation.
    hessian += scale * noise
    hessian[np.diag_indices(n)] += (math.sqrt(2.0) - 1.0) * scale * np.diagonal(noise)


def _add_product(hessian: np.ndarray, rng: np.random.Generator, eps: float, phi: float) -> None:
    """Upper triangle ``+=`` the off-diagonal block ``H₁₂ = √(2ε)/(2k) · ÊX̂ᵀ``."""
    n = hessian.shape[0]
    n1 = n // 2
    k = max(1, round(n / (2.0 * phi)))
    residuals = rng.standard_normal((n1, k))
    inputs = rng.standard_normal((n - n1, k))
    hessian[:n1, n1:] += (math.sqrt(2.0 * eps) / (2.0 * k)) * (residuals @ inputs.T)
