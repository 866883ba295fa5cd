"""Matrix-free Monte Carlo for large ``p``: ``H·V = Xᵀ(D(X·V))/n``, block Lanczos, quadrature.

Where ``p`` is in the tens of thousands, forming ``H = XᵀDX/n`` (``n·p²`` flops, ``p²`` memory) and
diagonalising it (``p³``) is out of reach; multiplying by it is not.  This module never forms ``H``:

* :func:`draw` generates the features in row blocks of a fixed size, each from its own keyed
  generator ``PCG64(SeedSequence(seed, spawn_key=(…, 0, block)))``, in as many threads as BLAS is
  allowed, optionally in ``float32`` (half the memory and memory traffic of every product).  The
  block layout depends on ``p``, ``n`` and the data type only, so the draw is the same bit for bit
  whatever the thread count.  Blocks are held in memory when they fit in ``memory`` bytes and are
  generated again for every product otherwise (slow, but ``X`` is then never held whole).
* :func:`analyse` runs a block Lanczos recurrence with full reorthogonalisation from a block of
  ``probes`` random orthonormal vectors (``Q₁``, Haar distributed, keyed by the same seed), for
  ``steps`` steps.  The eigen-decomposition ``T = S Θ Sᵀ`` of the block tridiagonal matrix gives

  - the **stochastic Lanczos quadrature** of the spectral measure: nodes ``θᵢ`` (Ritz values) and
    weights ``‖S[:b, i]‖²/b``; the quadrature's expectation over ``Q₁`` is exactly the empirical
    spectral measure of ``H``, and it is exact for polynomials of degree ``2·steps − 1``;
  - the **extreme eigenpairs** (Ritz pairs at both ends of the spectrum), which converge first:
    an isolated eigenvalue (a spike) converges geometrically in ``steps``.  Each comes with its
    residual ``‖Hu − θu‖``, read off the recurrence, relative to ``max|θ|``.

  One Krylov space serves both: a second Lanczos run for the extremes (ARPACK's ``eigsh`` on a
  ``LinearOperator``) would repeat the products, which are the whole cost.

* Products are made a generation block at a time: ``u = X_B V`` then ``Xᵀ_B (g_B u)``, one
  ``gemv`` per vector for a few vectors (memory-bound: at the memory's speed), ``gemm`` for more.
  Partial sums go to a fixed number of lanes (:data:`_LANES`) summed in a fixed order, so the
  product does not depend on the thread count.

The resolution of the quadrature's distribution function is about ``1/steps`` (its error at ``x`` is
bounded by the Christoffel weight of the nodes near ``x``); the probes' sampling error is
``O(1/√(probes·p))``.  With the default 80 steps the first is about 0.01 in Kolmogorov distance
(``tests/test_lanczos.py``, ``bench/lanczos.py``); the default 4 probes keep the second at about
0.01 from p ≈ 2000 on.  At large p one or two probes are enough, and cheaper: fewer than 4 vectors
go through memory-bound ``gemv`` products (see :class:`_Product`).
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.linalg import eigh
from threadpoolctl import ThreadpoolController

from pipeline.montecarlo import (
    SeedLike,
    _alignments,
    _check_compatible,
    _curvature,
    _project,
    _scale_and_shift,
    _seed_sequence,
)
from pipeline.scenario import Scenario

__all__ = ["DTYPES", "ZERO_TOLERANCE", "FeatureBlocks", "LanczosResult", "analyse", "draw", "sample"]

#: Data types the features can be held in.
DTYPES = ("float64", "float32")
# Bytes of one generation block of X: large enough that the generators run at full speed, small
# enough that two threads share the work evenly.  Fixed, so the draw does not depend on the machine.
_GENERATION_BYTES = 32 * 2**20
# From this many vectors on, a product uses matrix products rather than one gemv per vector.
_GEMM_PROBES = 4
# Partial sums of a product, one per lane, added in lane order: the result is independent of the
# number of threads (at most this many) that compute them.
_LANES = 8
#: Per data type, the fraction of max|θ| within which a Ritz value is a zero eigenvalue (an atom), not
#: a sign: the rounding of one product in that type, amplified by the recurrence, stays far below it.
ZERO_TOLERANCE = {"float64": 1e-11, "float32": 1e-5}
# The recurrence stops when a new block is this close to rank-deficient (relative to max|θ| so far):
# the Krylov space is then invariant and its Ritz values are eigenvalues.
_BREAKDOWN = 1e-10


@dataclass(frozen=True, eq=False)
class FeatureBlocks:
    """The random part of one matrix-free run: features in row blocks, labels, geometry.

    Attributes
    ----------
    n, p : int
        Samples and dimension.
    dtype : str
        ``"float64"`` or ``"float32"``: the features' data type.
    h, h_star, y : numpy.ndarray
        ``Xw``, ``Xw*`` (float64, from the features as held) and the labels, shape ``(n,)``.
    c : float
        The scenario's ``p/n``.
    model : str or mapping
        The scenario's (normalised) response model.
    covariance_diagonal : numpy.ndarray
        Diagonal of ``C``, shape ``(p,)``.
    vectors : mapping
        ``μ``, ``w*`` and ``w``, keyed by :data:`pipeline.scenario.TARGETS`.
    held : bool
        Whether the blocks are kept in memory (else generated again for every product).
    """

    n: int
    p: int
    dtype: str
    h: np.ndarray
    h_star: np.ndarray
    y: np.ndarray
    c: float
    model: str | Mapping[str, Any]
    covariance_diagonal: np.ndarray
    vectors: Mapping[str, np.ndarray]
    held: bool
    _seed: np.random.SeedSequence
    _starts: tuple[int, ...]
    _blocks: tuple[np.ndarray, ...] | None

    def block(self, index: int) -> np.ndarray:
        """Row block ``index`` of ``X`` (read-only), from memory or generated again."""
        if self._blocks is not None:
            return self._blocks[index]
        return _generate(self, index)[0]

    @property
    def block_count(self) -> int:
        """Number of generation blocks."""
        return len(self._starts)

    @property
    def nbytes(self) -> int:
        """Bytes of ``X`` in its data type."""
        return self.n * self.p * np.dtype(self.dtype).itemsize


@dataclass(frozen=True, eq=False)
class LanczosResult:
    """Quadrature of the spectral measure of ``H`` and its extreme Ritz pairs.

    Attributes
    ----------
    nodes, weights : numpy.ndarray
        Quadrature nodes (Ritz values, ascending) and weights (summing to 1), ``probes × steps``
        of each (fewer if the Krylov space became invariant: see ``steps_done``).
    top, bottom : numpy.ndarray
        The ``k`` largest (largest first) and smallest (smallest first) Ritz values.
    residual_top, residual_bottom : numpy.ndarray
        ``‖Hu − θu‖ / max|θ|`` of those Ritz pairs: an eigenvalue of ``H`` lies within this
        (times ``max|θ|``) of each.
    align_top, align_bottom : mapping
        For each target, the squared cosines of the corresponding Ritz vectors with the unit target
        (NaN for a zero target), as :class:`pipeline.montecarlo.MonteCarloResult` has them.
    p, n : int
        Dimension and number of samples.
    negative_fraction : float
        Quadrature weight of the nodes below ``-tolerance·max|θ|``.
    atom_zero : float
        Quadrature weight of the nodes within ``tolerance·max|θ|`` of 0 (``p − n`` exact zeros of
        ``p/n`` when ``p > n``).
    steps_done : int
        Lanczos steps made (``steps`` unless the Krylov space became invariant first).
    zero_tolerance : float
        The ``tolerance`` above: :data:`ZERO_TOLERANCE` of the features' data type.
    """

    nodes: np.ndarray
    weights: np.ndarray
    top: np.ndarray
    bottom: np.ndarray
    residual_top: np.ndarray
    residual_bottom: np.ndarray
    align_top: dict[str, np.ndarray]
    align_bottom: dict[str, np.ndarray]
    p: int
    n: int
    negative_fraction: float
    atom_zero: float
    steps_done: int
    zero_tolerance: float

    @property
    def k(self) -> int:
        """Number of extreme Ritz pairs on each side."""
        return len(self.top)

    def cdf(self, x: np.ndarray | float) -> np.ndarray:
        """The quadrature's distribution function: its atom at 0, linear between the other nodes.

        The Gauss quadrature's own distribution function is a staircase; the true one lies between
        its values on either side of each node (Chebyshev–Markov–Stieltjes), so the line through
        the steps' midpoints is the better estimate.  The nodes at 0 (within the zero tolerance)
        are an atom, a jump at 0, not a step to draw a line through.
        """
        x = np.asarray(x, dtype=float)
        zero = self._at_zero()
        nodes, weights = self.nodes[~zero], self.weights[~zero]
        levels = np.cumsum(weights) - weights / 2
        continuous = np.interp(x, nodes, levels, left=0.0, right=float(weights.sum()))
        return continuous + self.atom_zero * (x >= 0)

    def _at_zero(self) -> np.ndarray:
        """Which nodes are zero eigenvalues: within the zero tolerance of 0, relative to max|θ|."""
        return np.abs(self.nodes) <= self.zero_tolerance * np.max(np.abs(self.nodes))

    def density(self, x: np.ndarray) -> np.ndarray:
        """Density of the quadrature's measure on the abscissae ``x``, the atom at 0 left out.

        Each node is spread into a Gaussian as wide as the spacing of an ``m``-point Gauss rule
        there (``m`` the steps made): ``π·√((θ − a)(b − θ))/m`` on ``[a, b]``, the nodes' hull, as
        for Chebyshev points, and at least ``(b − a)/m²``.  Narrower widths leave the rule's
        oscillations (20–50% of the peak at 40 steps on Marchenko–Pastur); a constant width
        ``(b − a)/m`` blurs the edges (L1 error 0.048 against 0.030 for this one, and 2% of the peak
        inside the bulk).
        """
        x = np.asarray(x, dtype=float)
        keep = ~self._at_zero()
        nodes, weights = self.nodes[keep], self.weights[keep]
        if nodes.size < 2:
            return np.zeros_like(x)
        low, high = nodes[0], nodes[-1]
        steps = self.steps_done
        spacing = math.pi * np.sqrt(np.maximum((nodes - low) * (high - nodes), 0.0)) / steps
        sigma = np.maximum(spacing, (high - low) / steps**2)
        z = (x[..., None] - nodes) / sigma
        return np.sum(weights * np.exp(-0.5 * z * z) / (sigma * math.sqrt(2.0 * math.pi)), axis=-1)


def sample(
    scenario: Scenario,
    p: int,
    seed: SeedLike,
    *,
    k: int = 2,
    probes: int = 4,
    steps: int = 80,
    dtype: str = "float64",
    memory: float = 16 * 2**30,
) -> LanczosResult:
    """Draw one Hessian of a scenario, never formed, and its quadrature and extreme Ritz pairs.

    Exactly ``analyse(draw(scenario, p, seed, dtype=dtype, memory=memory), scenario, seed, ...)``.

    Parameters
    ----------
    scenario : Scenario
        The grid point.
    p : int
        Dimension; ``n = round(p / c)``.
    seed : int, sequence of int or numpy.random.SeedSequence
        Entropy of the draw and of the probes.
    k : int, default 2
        Extreme Ritz pairs kept on each side.
    probes, steps : int, default 4 and 80
        Block size and number of steps of the Lanczos recurrence; ``probes·steps < p``.
    dtype : {"float64", "float32"}
        Data type of the features and of the products.
    memory : float
        Bytes the features may take in memory; beyond, blocks are generated for every product.

    Returns
    -------
    LanczosResult

    Examples
    --------
    >>> r = sample(Scenario(0.5, model="linear", loss="square"), 400, seed=0, probes=4, steps=30)
    >>> r.nodes.shape, round(float(r.weights.sum()), 12)
    ((120,), 1.0)
    """
    features = draw(scenario, p, seed, dtype=dtype, memory=memory)
    return analyse(features, scenario, seed, k=k, probes=probes, steps=steps)


def draw(
    scenario: Scenario, p: int, seed: SeedLike, *, dtype: str = "float64", memory: float = 16 * 2**30
) -> FeatureBlocks:
    """Generate the features in keyed row blocks, and the labels; hold the blocks if they fit.

    Block ``j`` of ``X`` and its labels come from
    ``Generator(PCG64(SeedSequence(entropy, spawn_key=(*spawn_key, 0, j))))``, ``Z`` first and then
    the labels, so the draw is a function of the seed, ``p``, ``c``, the geometry and ``dtype``
    only.  It differs from :func:`pipeline.montecarlo.draw` (one generator for all of ``X``).

    Parameters
    ----------
    scenario : Scenario
        The grid point (its loss is not used: one draw serves every loss).
    p : int
        Dimension, ``>= 2``.
    seed : int, sequence of int or numpy.random.SeedSequence
        Entropy of the draw.
    dtype : {"float64", "float32"}
        Data type of ``X``.  ``float32`` draws ``Z`` with numpy's single-precision normal
        generator: other numbers than ``float64``, not the same ones rounded.
    memory : float
        Largest size of ``X`` in bytes that is held in memory.

    Returns
    -------
    FeatureBlocks

    Raises
    ------
    ValueError
        For a bad ``p``, ``seed`` or ``dtype``.
    """
    if isinstance(p, bool) or not isinstance(p, numbers.Integral) or p < 2:
        raise ValueError(f"p must be an integer >= 2, not {p!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}")
    p = int(p)
    n = round(p / scenario.c)
    if n < 1:
        raise ValueError(f"p = {p} at c = {scenario.c:g} gives n = {n} samples; need n >= 1")
    diagonal, vectors = scenario.embed(p)
    rows = max(1, _GENERATION_BYTES // (p * np.dtype(dtype).itemsize))
    starts = tuple(range(0, n, rows))
    held = n * p * np.dtype(dtype).itemsize <= memory
    shell = FeatureBlocks(
        n=n,
        p=p,
        dtype=dtype,
        h=np.empty(n),
        h_star=np.empty(n),
        y=np.empty(n),
        c=scenario.c,
        model=scenario.model,
        covariance_diagonal=diagonal,
        vectors=vectors,
        held=held,
        _seed=_seed_sequence(seed),
        _starts=starts,
        _blocks=None,
    )
    response = scenario.response_model

    def generate(index: int) -> np.ndarray:
        block, rng = _generate(shell, index)
        rows_of = slice(starts[index], starts[index] + block.shape[0])
        shell.h[rows_of] = _project(block, vectors["w"])
        shell.h_star[rows_of] = _project(block, vectors["w_star"])
        shell.y[rows_of] = response.sample(shell.h_star[rows_of], rng)
        # Unheld blocks are dropped at once: they are generated again for every product.
        return block if held else block[:0]

    threads = _threads()
    with _one_blas_thread():
        blocks = _map_threads(generate, range(len(starts)), threads)
    for array in (shell.h, shell.h_star, shell.y, diagonal, *vectors.values()):
        array.flags.writeable = False
    return replace(shell, _blocks=tuple(blocks)) if held else shell


def analyse(
    features: FeatureBlocks,
    scenario: Scenario,
    seed: SeedLike,
    *,
    k: int = 2,
    probes: int = 4,
    steps: int = 80,
) -> LanczosResult:
    """Block Lanczos on ``H = XᵀDX/n`` under a scenario's loss: quadrature and extreme Ritz pairs.

    Parameters
    ----------
    features : FeatureBlocks
        From :func:`draw`.
    scenario : Scenario
        Gives the loss and label transform; its ``c``, model and geometry must be the draw's.
    seed : int, sequence of int or numpy.random.SeedSequence
        The draw's seed: the probes come from it (``spawn_key=(…, 1)``), the same for every loss.
    k : int, default 2
        Extreme Ritz pairs kept on each side, ``0 <= k <= probes·steps``.
    probes, steps : int, default 4 and 80
        Block size and steps, ``probes >= 1``, ``steps >= 1``, ``probes·steps < p``.

    Returns
    -------
    LanczosResult

    Raises
    ------
    ValueError
        If the scenario does not match the draw, or ``k``, ``probes`` or ``steps`` are out of range.
    RuntimeError
        If the curvature is not finite.
    """
    _check_compatible(features, scenario)  # type: ignore[arg-type]
    p, n = features.p, features.n
    for name, value, low in (("probes", probes, 1), ("steps", steps, 1), ("k", k, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, not {value!r}")
    if probes * steps >= p:
        raise ValueError(f"probes × steps = {probes * steps} must be < p = {p}")
    if k > probes * steps:
        raise ValueError(f"k = {k} exceeds the Krylov dimension probes × steps = {probes * steps}")

    product = _Product(features, _curvature(scenario, features.y, features.h), _threads())

    probe_seed = _child(_seed_sequence(seed), 1)
    start = np.random.Generator(np.random.PCG64(probe_seed)).standard_normal((p, probes))
    ritz, vectors, residuals, steps_done = _block_lanczos(product, np.linalg.qr(start)[0], steps)
    values, weights = ritz
    scale = float(np.max(np.abs(values)))
    tolerance = ZERO_TOLERANCE[features.dtype]
    negative = float(weights[values < -tolerance * scale].sum())
    atom = float(weights[np.abs(values) <= tolerance * scale].sum())

    bottom, top = np.arange(k), np.arange(values.size - 1, values.size - 1 - k, -1)
    # Ritz vectors only for the 2k extreme pairs: the basis is p × (probes·steps).
    extreme = vectors(np.concatenate([bottom, top]))
    for array in (values, weights):
        array.flags.writeable = False
    return LanczosResult(
        nodes=values,
        weights=weights,
        top=values[top].copy(),
        bottom=values[bottom].copy(),
        residual_top=residuals[top] / scale,
        residual_bottom=residuals[bottom] / scale,
        align_top=_alignments(extreme[:, k:], features.vectors),
        align_bottom=_alignments(extreme[:, :k], features.vectors),
        p=p,
        n=n,
        negative_fraction=negative,
        atom_zero=atom,
        steps_done=steps_done,
        zero_tolerance=tolerance,
    )


# ----------------------------------------------------------------------------------------------
# Implementation
# ----------------------------------------------------------------------------------------------


def _child(seed: np.random.SeedSequence, *key: int) -> np.random.SeedSequence:
    """The seed sequence ``seed`` with ``key`` appended to its spawn key (what ``spawn`` makes)."""
    return np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, *key))


def _generate(features: FeatureBlocks, index: int) -> tuple[np.ndarray, np.random.Generator]:
    """Row block ``index`` of ``X`` (read-only) and its generator, positioned for the labels."""
    start = features._starts[index]
    stop = features._starts[index + 1] if index + 1 < len(features._starts) else features.n
    rng = np.random.Generator(np.random.PCG64(_child(features._seed, 0, index)))
    block = rng.standard_normal((stop - start, features.p), dtype=np.dtype(features.dtype).type)
    _scale_and_shift(block, features.covariance_diagonal, features.vectors["mu"])
    block.flags.writeable = False
    return block, rng


@functools.cache
def _controller() -> ThreadpoolController:
    """The BLAS libraries of this process (found once: the search reads every loaded library)."""
    return ThreadpoolController()


def _threads() -> int:
    """Threads for this process's work: as many as its BLAS may use (1 in a sweep's workers)."""
    counts = [info["num_threads"] for info in _controller().info() if info["user_api"] == "blas"]
    return max(1, min(_LANES, min(counts, default=1)))


def _one_blas_thread() -> Any:
    """A context in which BLAS uses one thread: our own threads share the work instead."""
    return _controller().limit(limits=1, user_api="blas")


def _map_threads(
    function: Callable[[int], np.ndarray], indices: Sequence[int] | range, threads: int
) -> list[np.ndarray]:
    """``[function(i) for i in indices]`` in ``threads`` threads (BLAS is at one thread by then)."""
    if threads == 1:
        return [function(i) for i in indices]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(function, indices))


class _Product:
    """``V ↦ Xᵀ diag(g) X V / n`` made a generation block at a time, lane by lane; float64 in and out.

    With fewer than :data:`_GEMM_PROBES` vectors, one matrix-vector product per vector and pass
    (BLAS ``gemv``, memory-bound: X is read at the memory's speed); with more, one matrix product
    per pass (``gemm``).  OpenBLAS's ``gemm`` with a handful of columns runs far below both the
    memory's and the cores' speed: measured on 2 cores at p = 20 000, one pass over 400 MB of
    float32 X took 0.065 s for 1 vector (gemv), 0.19 s for 2 and 0.16 s for 8 vectors (gemm).
    Row blocks smaller than a generation block (cache-sized, for the second pass) were slower.
    """

    def __init__(self, features: FeatureBlocks, curvature: np.ndarray, threads: int) -> None:
        self.features = features
        self.threads = threads
        self.dtype = np.dtype(features.dtype)
        self.scaled_curvature = (curvature / features.n).astype(self.dtype)

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        features = self.features
        # Fortran order: each vector is contiguous (the gemv path takes them one at a time).
        right = np.asfortranarray(vectors, dtype=self.dtype)
        columns = right.shape[1]

        def lane(index: int) -> np.ndarray:
            total = np.zeros((features.p, columns), dtype=self.dtype, order="F")
            for j in range(index, features.block_count, _LANES):
                block = features.block(j)
                start = features._starts[j]
                weights = self.scaled_curvature[start : start + block.shape[0]]
                if columns < _GEMM_PROBES:
                    for column in range(columns):
                        total[:, column] += block.T @ (weights * (block @ right[:, column]))
                else:
                    total += block.T @ (weights[:, None] * (block @ right))
            return total

        with _one_blas_thread():
            partial = _map_threads(lane, range(_LANES), self.threads)
        result = partial[0].astype(np.float64)
        for part in partial[1:]:
            result += part
        return result


def _block_lanczos(
    product: Callable[[np.ndarray], np.ndarray], start: np.ndarray, steps: int
) -> tuple[tuple[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray], np.ndarray, int]:
    """Block Lanczos with full reorthogonalisation from the orthonormal block ``start``.

    Returns the quadrature (Ritz values ascending, weights), a function giving the Ritz vectors of
    chosen indices, the residual norm of every Ritz pair and the number of steps made.
    """
    p, b = start.shape
    basis = np.empty((p, b * (steps + 1)))
    basis[:, :b] = start
    diagonal: list[np.ndarray] = []
    below: list[np.ndarray] = []
    previous = np.zeros((b, b))
    scale = 0.0
    made = 0
    for j in range(steps):
        current = basis[:, j * b : (j + 1) * b]
        block = product(current)
        if j:
            block -= basis[:, (j - 1) * b : j * b] @ previous.T
        coefficient = current.T @ block
        coefficient = (coefficient + coefficient.T) / 2
        block -= current @ coefficient
        # Twice is enough (Kahan's "twice is enough"): the block is then orthogonal to the basis
        # to working precision, and the recurrence never loses orthogonality.
        known = basis[:, : (j + 1) * b]
        for _ in range(2):
            block -= known @ (known.T @ block)
        following, triangular = np.linalg.qr(block)
        diagonal.append(coefficient)
        below.append(triangular)
        made = j + 1
        scale = max(scale, float(np.max(np.abs(coefficient))), float(np.max(np.abs(triangular))))
        basis[:, (j + 1) * b : (j + 2) * b] = following
        previous = triangular
        if np.min(np.abs(np.diag(triangular))) <= _BREAKDOWN * scale:
            break

    d = made * b
    tridiagonal = np.zeros((d, d))
    for j in range(made):
        tridiagonal[j * b : (j + 1) * b, j * b : (j + 1) * b] = diagonal[j]
        if j + 1 < made:
            tridiagonal[(j + 1) * b : (j + 2) * b, j * b : (j + 1) * b] = below[j]
            tridiagonal[j * b : (j + 1) * b, (j + 1) * b : (j + 2) * b] = below[j].T
    values, eigenvectors = eigh(tridiagonal)
    weights = np.sum(eigenvectors[:b] ** 2, axis=0) / b
    # H·(Q S)ᵢ − θᵢ(Q S)ᵢ = Q_{m+1} B_m S[last block, i]: its norm is the residual.
    residuals = np.linalg.norm(below[-1] @ eigenvectors[-b:], axis=0)
    weights /= weights.sum()

    def ritz_vectors(indices: np.ndarray) -> np.ndarray:
        return basis[:, :d] @ eigenvectors[:, indices]

    return (values, weights), ritz_vectors, residuals, made
