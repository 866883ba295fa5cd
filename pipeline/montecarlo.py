"""Monte Carlo for one grid point: draw ``X`` and ``y``, build ``H = XᵀDX/n``, diagonalise it.

A grid point's random part and its linear algebra are separate steps, so that a sweep runs every
loss of a point on one draw of the features (``shared/DESIGN.md``: all losses at one point see the
same ``X``):

* :func:`draw` makes the random part.  Its generator is
  ``Generator(PCG64(SeedSequence(seed)))`` with a keyed seed such as
  ``(sweep_seed, i_c, i_signal, trial)``.  It draws ``Z`` (``n × p`` standard normals) first, then
  the labels.  ``X = μᵀ + Z·diag(√C)``, ``h = Xw`` and ``h* = Xw*`` are computed with elementwise
  operations only (the vectors have at most two nonzero coordinates per covariance block), so a
  draw is bit-identical on every machine, whatever the BLAS or its thread count.
* :func:`analyse` takes one loss (and label transform) and computes ``g = ℓ''(y, h)`` and
  ``H = (X₊ᵀX₊ − X₋ᵀX₋)/n``, where ``X±`` are the rows with ``g > 0`` (``g < 0``) scaled by
  ``√|g|``: one BLAS ``dsyrk`` per sign, filling the lower triangle only.  ``X`` is C-ordered
  ``n × p``, so ``Xᵀ`` is a Fortran-ordered ``p × n`` view and ``dsyrk(trans=0)`` on it computes
  ``XᵀX`` without copying ``X`` (``dsyrk(trans=1)`` on ``X`` itself would copy it to Fortran order).
* Then one tridiagonalisation ``H = Q T Qᵀ`` (LAPACK ``dsytrd``, blocked, with the optimal
  workspace), all eigenvalues of ``T`` by ``dsterf`` (the root-free QR that ``dsyevd`` uses without
  eigenvectors: O(p²)), the ``k`` smallest and ``k`` largest eigenpairs of ``T`` by bisection and
  inverse iteration (``dstebz`` + ``dstein``, as ``dsyevx`` does), and back-transformation of these
  ``2k`` vectors by the Householder reflectors of ``dsytrd`` (``dormqr``, see :func:`_apply_q`).
  The cost beyond eigenvalues alone is O(p²k), against the O(p³) of the tridiagonalisation.

The alignment of an eigenvector ``u`` with a target ``t ∈ {μ, w*, w}`` is ``(uᵀt/‖t‖)²``, NaN
where ``t = 0``.  Eigenvalues and alignments are reproducible bit for bit for one BLAS build, CPU
kernel and thread count; across these they agree to rounding.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import blas, lapack

from pipeline.scenario import TARGETS, Scenario

__all__ = ["Draw", "MonteCarloResult", "analyse", "draw", "sample"]

# dstebz's absolute tolerance: LAPACK recommends twice the underflow threshold (not 0) when the
# eigenvalues feed inverse iteration, for the most accurate eigenvalues and hence eigenvectors.
_BISECTION_TOLERANCE = 2.0 * np.finfo(np.float64).tiny
# An eigenvalue counts as negative only below -p·ε·‖H‖: a backward-stable eigensolver moves every
# eigenvalue by up to about that much, so exact zeros (p - n of them for p > n) come out with
# either sign and must not be counted.
_EPSILON = float(np.finfo(np.float64).eps)
# Largest block of scaled rows of X held at once while H is accumulated (see _hessian).
_BLOCK_BYTES = 32 * 2**20
# dstebz's RANGE argument: eigenvalues il..iu by index.
_BY_INDEX = 3

SeedLike = int | Sequence[int] | np.random.SeedSequence


@dataclass(frozen=True, eq=False)
class Draw:
    """The random part of one Monte Carlo run: features, labels and the geometry they came from.

    Every array is read-only: one draw is shared by the analyses of several losses.

    Attributes
    ----------
    X : numpy.ndarray
        Features, C-ordered ``(n, p)``; row ``i`` is ``x_i ~ N(μ, C)``.
    h, h_star : numpy.ndarray
        ``Xw`` and ``Xw*``, shape ``(n,)``.
    y : numpy.ndarray
        Labels drawn from the response model given ``h_star``, before any label transform.
    c : float
        The scenario's ``p/n``.
    model : str or mapping
        The scenario's (normalised) response model.
    covariance_diagonal : numpy.ndarray
        Diagonal of ``C``, shape ``(p,)``.
    vectors : mapping
        ``μ``, ``w*`` and ``w`` in ``R^p``, keyed by :data:`pipeline.scenario.TARGETS`.
    """

    X: np.ndarray
    h: np.ndarray
    h_star: np.ndarray
    y: np.ndarray
    c: float
    model: str | Mapping[str, Any]
    covariance_diagonal: np.ndarray
    vectors: Mapping[str, np.ndarray]

    @property
    def n(self) -> int:
        """Number of samples."""
        return self.X.shape[0]

    @property
    def p(self) -> int:
        """Dimension."""
        return self.X.shape[1]


@dataclass(frozen=True, eq=False)
class MonteCarloResult:
    """Spectrum of one Monte Carlo Hessian and the alignments of its extreme eigenvectors.

    Attributes
    ----------
    eigenvalues : numpy.ndarray
        All ``p`` eigenvalues of ``H``, ascending.
    align_top, align_bottom : mapping
        For each target of :data:`pipeline.scenario.TARGETS`, the squared cosines of the ``k``
        eigenvectors with the largest (smallest) eigenvalues with the unit target vector; index 0
        is the most extreme eigenvalue.  NaN for a target vector that is zero.
    p, n : int
        Dimension and number of samples.
    negative_fraction : float
        Fraction of the eigenvalues below ``-p·ε·max|λ|`` (negative beyond rounding).
    """

    eigenvalues: np.ndarray
    align_top: dict[str, np.ndarray]
    align_bottom: dict[str, np.ndarray]
    p: int
    n: int
    negative_fraction: float

    @property
    def k(self) -> int:
        """Number of extreme eigenvectors on each side."""
        return len(next(iter(self.align_top.values())))


def sample(scenario: Scenario, p: int, seed: SeedLike, *, k: int = 2) -> MonteCarloResult:
    """Draw one Hessian of a scenario and compute its spectrum and extreme alignments.

    Exactly ``analyse(draw(scenario, p, seed), scenario, k=k)``.

    Parameters
    ----------
    scenario : Scenario
        The grid point.
    p : int
        Dimension; ``n = round(p / c)``.
    seed : int, sequence of int or numpy.random.SeedSequence
        Entropy of the generator, e.g. ``(sweep_seed, i_c, i_signal, trial)``.
    k : int, default 2
        Number of extreme eigenvectors kept on each side of the spectrum, ``0 <= k <= p``.

    Returns
    -------
    MonteCarloResult

    Raises
    ------
    ValueError
        For a bad ``p``, ``seed`` or ``k``.
    RuntimeError
        If the curvature is not finite or a LAPACK routine fails.

    See Also
    --------
    draw, analyse

    Examples
    --------
    >>> result = sample(Scenario(0.5, model="linear", loss="square"), 40, seed=(0, 1))
    >>> result.eigenvalues.shape, result.n, result.align_top["mu"].shape
    ((40,), 80, (2,))
    """
    return analyse(draw(scenario, p, seed), scenario, k=k)


def draw(scenario: Scenario, p: int, seed: SeedLike) -> Draw:
    """Draw the features and labels of one Monte Carlo run.

    The draw depends on the scenario's ``c``, response model and geometry (``μ``, ``w*``, ``w``,
    ``C``) but not on its loss or label transform, so that one draw serves every loss.

    Parameters
    ----------
    scenario : Scenario
        The grid point.
    p : int
        Dimension, ``>= 2``; ``n = round(p / c)`` must be ``>= 1``.
    seed : int, sequence of int or numpy.random.SeedSequence
        Entropy of ``Generator(PCG64(SeedSequence(seed)))``; the same seed gives the same draw
        bit for bit on any machine.

    Returns
    -------
    Draw

    Raises
    ------
    ValueError
        If ``p`` is not an integer, gives ``n < 1`` or leaves a covariance block fewer than two
        coordinates, or if ``seed`` is missing or negative.

    Examples
    --------
    >>> d = draw(Scenario(2.0, model="phase", loss="phase"), 10, seed=3)
    >>> d.X.shape, bool((d.y == d.h_star**2).all())
    ((5, 10), True)
    """
    if isinstance(p, bool) or not isinstance(p, numbers.Integral):
        raise ValueError(f"p must be an integer, not {p!r}")
    p = int(p)
    n = round(p / scenario.c)
    if n < 1:
        raise ValueError(f"p = {p} at c = {scenario.c:g} gives n = {n} samples; need n >= 1")
    diagonal, vectors = scenario.embed(p)
    rng = np.random.Generator(np.random.PCG64(_seed_sequence(seed)))

    features = rng.standard_normal((n, p))
    _scale_and_shift(features, diagonal, vectors["mu"])
    h = _project(features, vectors["w"])
    h_star = _project(features, vectors["w_star"])
    y = np.asarray(scenario.response_model.sample(h_star, rng), dtype=np.float64)

    for array in (features, h, h_star, y, diagonal, *vectors.values()):
        array.flags.writeable = False
    return Draw(
        X=features,
        h=h,
        h_star=h_star,
        y=y,
        c=scenario.c,
        model=scenario.model,
        covariance_diagonal=diagonal,
        vectors=vectors,
    )


def analyse(draw: Draw, scenario: Scenario, *, k: int = 2) -> MonteCarloResult:
    """Compute the Hessian of one draw under a scenario's loss, its spectrum and alignments.

    Parameters
    ----------
    draw : Draw
        Features and labels from :func:`draw`.
    scenario : Scenario
        Gives the loss and label transform; its ``c``, response model and geometry must be those
        the draw was made with.
    k : int, default 2
        Number of extreme eigenvectors kept on each side of the spectrum, ``0 <= k <= p``.

    Returns
    -------
    MonteCarloResult

    Raises
    ------
    ValueError
        If the scenario does not match the draw, or ``k`` is out of range.
    RuntimeError
        If the curvature is not finite or a LAPACK routine fails.

    Examples
    --------
    >>> s = Scenario(0.5, model="logistic", loss="logistic")
    >>> d = draw(s, 40, seed=0)
    >>> a = analyse(d, s)
    >>> b = analyse(d, s.replace(loss="exponential"))
    >>> bool(a.eigenvalues[-1] < b.eigenvalues[-1])
    True
    """
    _check_compatible(draw, scenario)
    p = draw.p
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 0 <= k <= p:
        raise ValueError(f"k must be an integer in [0, p = {p}], not {k!r}")
    k = int(k)

    curvature = _curvature(scenario, draw.y, draw.h)
    hessian = _hessian(draw.X, curvature)
    eigenvalues, bottom, top = _spectrum(hessian, k)

    scale = np.max(np.abs(eigenvalues))
    negative = np.count_nonzero(eigenvalues < -p * _EPSILON * scale)
    eigenvalues.flags.writeable = False
    return MonteCarloResult(
        eigenvalues=eigenvalues,
        align_top=_alignments(top, draw.vectors),
        align_bottom=_alignments(bottom, draw.vectors),
        p=p,
        n=draw.n,
        negative_fraction=negative / p,
    )


# ----------------------------------------------------------------------------------------------
# Implementation
# ----------------------------------------------------------------------------------------------


def _seed_sequence(seed: SeedLike) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    # SeedSequence(None) would draw fresh OS entropy: a silently irreproducible run.
    if seed is None or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, a sequence of ints or a SeedSequence, not {seed!r}")
    try:
        return np.random.SeedSequence(seed)
    except (TypeError, ValueError) as error:
        raise ValueError(f"bad seed {seed!r}: {error}") from error


def _scale_and_shift(features: np.ndarray, diagonal: np.ndarray, mu: np.ndarray) -> None:
    """``features ← features·diag(√C) + μᵀ`` in place, in the features' data type."""
    # Scaling by 1 and adding 0 are exact: skipping them changes no bit and saves two passes.
    if np.any(diagonal != 1.0):
        features *= np.sqrt(diagonal).astype(features.dtype)
    if np.any(mu):
        features += mu.astype(features.dtype)


def _curvature(scenario: Scenario, y: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``g = ℓ''(y, h)`` under the scenario's loss and labels; a RuntimeError if any is not finite."""
    # Overflow (e^{-yh} of the exponential loss) is reported below as an error, not a warning.
    with np.errstate(over="ignore", invalid="ignore"):
        curvature = np.asarray(scenario.curvature(y, h), dtype=np.float64)
    if not np.all(np.isfinite(curvature)):
        bad = int(np.count_nonzero(~np.isfinite(curvature)))
        raise RuntimeError(
            f"the {scenario.loss} loss's curvature is not finite for {bad} of {y.size} samples"
        )
    return curvature


def _project(features: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``features @ vector`` summed over the nonzero coordinates in a fixed order.

    Elementwise products and sums are correctly rounded, so unlike a BLAS matrix-vector product
    the result does not depend on the machine or the thread count.
    """
    projection = np.zeros(features.shape[0])
    for j in np.flatnonzero(vector):
        projection += features[:, j] * vector[j]
    return projection


def _check_compatible(draw: Draw, scenario: Scenario) -> None:
    if scenario.c != draw.c:
        raise ValueError(f"the scenario has c = {scenario.c:g} but the draw was made at c = {draw.c:g}")
    if scenario.model != draw.model:
        raise ValueError(f"the scenario's model {scenario.model!r} is not the draw's {draw.model!r}")
    diagonal, vectors = scenario.embed(draw.p)
    if not np.array_equal(diagonal, draw.covariance_diagonal):
        raise ValueError("the scenario's covariance is not the one the draw was made with")
    for name in TARGETS:
        if not np.array_equal(vectors[name], draw.vectors[name]):
            raise ValueError(f"the scenario's {name} is not the one the draw was made with")


def _hessian(features: np.ndarray, curvature: np.ndarray) -> np.ndarray:
    """``Xᵀ diag(g) X / n`` as a Fortran-ordered array whose lower triangle alone is set.

    Rows are scaled by ``√|g|`` a block of at most ``_BLOCK_BYTES`` at a time and added with one
    ``dsyrk`` per block and sign (``beta = 1`` after the first), so that the peak memory is
    ``X + H`` plus one block rather than a scaled copy of ``X``.  A block of a few thousand rows
    keeps ``dsyrk`` at full speed.
    """
    n, p = features.shape
    root = np.sqrt(np.abs(curvature))
    block = max(1, _BLOCK_BYTES // (8 * p))
    hessian = np.zeros((p, p), order="F")
    for rows, sign in ((np.flatnonzero(curvature > 0), 1.0), (np.flatnonzero(curvature < 0), -1.0)):
        for start in range(0, rows.size, block):
            chosen = rows[start : start + block]
            # Rows with g = 0 contribute nothing and are never gathered.
            scaled = features[chosen] if chosen.size < n else features.copy()
            scaled *= root[chosen, None]
            # scaled is C-ordered (m, p): scaled.T is the Fortran (p, m) array B with H += B Bᵀ
            # (trans=0), passed to BLAS without a copy.
            hessian = blas.dsyrk(sign / n, scaled.T, beta=1.0, c=hessian, trans=0, lower=1, overwrite_c=1)
            # Free this block before the next one is gathered: one block alive at a time.
            del scaled
    return hessian


def _check_info(routine: str, info: int) -> None:
    if info != 0:
        raise RuntimeError(f"LAPACK {routine} failed with info = {info}")


def _spectrum(hessian: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All eigenvalues of ``H`` and its ``k`` extreme eigenvectors at each end.

    ``hessian`` (Fortran order, lower triangle) is overwritten.  Returns the ascending eigenvalues
    and two ``(p, k)`` arrays of unit eigenvectors: the smallest eigenvalues first, and the largest
    eigenvalues first.
    """
    p = hessian.shape[0]
    lwork, info = lapack.dsytrd_lwork(p, lower=1)
    _check_info("dsytrd_lwork", info)
    # The default workspace (p) would select dsytrd's unblocked, BLAS-2-only algorithm.
    reflectors, diagonal, off_diagonal, tau, info = lapack.dsytrd(
        hessian, lower=1, lwork=int(lwork), overwrite_a=1
    )
    _check_info("dsytrd", info)
    # dsterf works on copies of the tridiagonal: dstebz and dstein need it afterwards.
    eigenvalues, info = lapack.dsterf(diagonal, off_diagonal)
    _check_info("dsterf", info)
    if k == 0:
        empty = np.empty((p, 0))
        return eigenvalues, empty, empty

    bottom = _tridiagonal_vectors(diagonal, off_diagonal, 1, k)
    top = _tridiagonal_vectors(diagonal, off_diagonal, p - k + 1, p)[:, ::-1]
    vectors = _apply_q(reflectors, tau, np.hstack([bottom, top]))
    return eigenvalues, vectors[:, :k], vectors[:, k:]


def _tridiagonal_vectors(diagonal: np.ndarray, off_diagonal: np.ndarray, first: int, last: int) -> np.ndarray:
    """Eigenvectors ``first..last`` (1-based, ascending) of the symmetric tridiagonal matrix."""
    found, values, block, split, info = lapack.dstebz(
        diagonal, off_diagonal, _BY_INDEX, 0.0, 0.0, first, last, _BISECTION_TOLERANCE, "B"
    )
    _check_info("dstebz", info)
    if found != last - first + 1:
        raise RuntimeError(f"LAPACK dstebz found {found} eigenvalues instead of {last - first + 1}")
    # dstein wants the eigenvalues grouped by split-off block (ORDER = 'B'); sort afterwards.
    vectors, info = lapack.dstein(diagonal, off_diagonal, values[:found], block, split)
    _check_info("dstein", info)
    return vectors[:, np.argsort(values[:found], kind="stable")]


def _apply_q(reflectors: np.ndarray, tau: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """``Q @ vectors`` for ``H = Q T Qᵀ`` from ``dsytrd(lower=1)``; what ``dormtr`` would do.

    With ``lower=1``, reflector ``i`` (0-based) is ``I - τᵢvvᵀ`` with ``v[:i+1] = 0``,
    ``v[i+1] = 1`` and ``v[i+2:]`` stored in ``reflectors[i+2:, i]``: on rows ``1..p-1`` this is
    the QR-type storage of the ``(p-1) × (p-1)`` block ``reflectors[1:, :p-1]``, so ``dormqr``
    applies ``Q`` to those rows and row 0 is unchanged.  That block is not contiguous and the
    wrapper would copy it (``p²`` memory).  Instead, read the same buffer as the Fortran
    ``p × (p-1)`` array starting at element ``(1, 0)``: its column ``i`` is ``reflectors[1:, i]``
    followed by ``reflectors[0, i+1]``, which lies in the unused upper triangle and is set to 0
    here.  Each reflector then has a zero last component, and a padding row appended to the
    vectors is left untouched.
    """
    p = reflectors.shape[0]
    reflectors[0, 1:] = 0.0
    shifted = reflectors.ravel(order="F")[1 : 1 + p * (p - 1)].reshape((p, p - 1), order="F")
    padded = np.zeros((p, vectors.shape[1]), order="F")
    padded[: p - 1] = vectors[1:]
    _, work, info = lapack.dormqr("L", "N", shifted, tau, padded, -1)
    _check_info("dormqr (workspace query)", info)
    product, _, info = lapack.dormqr("L", "N", shifted, tau, padded, int(work[0]), overwrite_c=1)
    _check_info("dormqr", info)
    result = np.empty_like(vectors)
    result[0] = vectors[0]
    result[1:] = product[: p - 1]
    return result


def _alignments(eigenvectors: np.ndarray, vectors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Squared cosines of each eigenvector (column) with each unit target; NaN for a zero target."""
    alignments = {}
    for name in TARGETS:
        target = vectors[name]
        norm = np.linalg.norm(target)
        if norm == 0.0:
            cosines = np.full(eigenvectors.shape[1], np.nan)
        else:
            cosines = (eigenvectors.T @ (target / norm)) ** 2
        cosines.flags.writeable = False
        alignments[name] = cosines
    return alignments
