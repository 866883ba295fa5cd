"""Symmetry of the shallow ReLU model: fixed spaces, symmetric starts, isotropy, the global minimum.

With the standard teacher ``V = [I_k 0]`` (``k × d``) the loss is invariant under
``W ↦ P_π W P_ρᵀ`` for ``π ∈ S_k`` (the student's neurons) and ``ρ ∈ S_k × S_{d−k}`` (the inputs:
the teacher's ``k`` directions among themselves, the other ``d − k`` among themselves).  The
isotropy of ``W`` is the subgroup fixing it.  The families of critical points are named by their
isotropy; ``Δ(S_{p₁} × … × S_{p_r})`` is the diagonal subgroup ``π = ρ`` permuting the rows and the
teacher columns of consecutive blocks of sizes ``p₁, …, p_r`` (the families of Arjevani & Field,
NeurIPS 2020), written here ``"S_{k-1} x S_1"`` (the diagonal is implied).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.errors import ScenarioError

__all__ = [
    "FixedSpace",
    "Isotropy",
    "five_parameter_point",
    "fixed_space",
    "flip_start",
    "global_minimum_spectrum",
    "isotropy",
    "standard_teacher",
]

_GAMMA = 1.0 / (2.0 * math.pi)
# Entries of a critical point equal by symmetry agree to about |δW| ≈ |∇L|/λ_min: 1e-12/5e-3 at the
# tolerance of find_critical_point and the smallest eigenvalue of the type-A minimum at k = 6; a
# broken symmetry moves entries by far more (the families differ in their entries at 1e-2).
ISOTROPY_TOLERANCE = 1e-6


def _size(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ScenarioError(name, f"must be an integer ≥ {minimum}, not {value!r}")
    return int(value)


def _dimensions(k: int, d: int | None) -> tuple[int, int]:
    k = _size("k", k)
    d = k if d is None else _size("d", d)
    if d < k:
        raise ScenarioError("d", f"is {d} < k = {k}: the model needs d ≥ k")
    return k, d


def standard_teacher(k: int, d: int | None = None) -> np.ndarray:
    """The teacher ``V = [I_k 0]``, ``k × d`` (``V = I`` when ``d = k`` or ``d`` is omitted).

    Examples
    --------
    >>> standard_teacher(2, 3).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """
    k, d = _dimensions(k, d)
    return np.eye(k, d)


@dataclass(frozen=True, eq=False)
class FixedSpace:
    """The fixed space of an isotropy group: the ``W`` whose entries are equal on each orbit of index pairs.

    Attributes
    ----------
    labels : numpy.ndarray
        ``k × d`` integers ``0 … dimension − 1``: the orbit of each entry of ``W``.
    name : str
        The group's name, e.g. ``"S_{k-1} x S_1"``.
    """

    labels: np.ndarray
    name: str

    @property
    def dimension(self) -> int:
        """Number of orbits, the dimension of the fixed space."""
        return int(self.labels.max()) + 1

    @property
    def basis(self) -> np.ndarray:
        """Orthonormal basis, ``dimension × kd``: row ``p`` is orbit ``p``'s indicator over √(its size)."""
        flat = self.labels.ravel()
        basis = (flat[None, :] == np.arange(self.dimension)[:, None]).astype(float)
        return basis / np.sqrt(basis.sum(axis=1, keepdims=True))

    def coordinates(self, W: np.ndarray) -> np.ndarray:
        """Coordinates of the orthogonal projection of ``W`` on the fixed space (orbit averages × √size)."""
        return self.basis @ np.asarray(W, dtype=float).ravel()

    def matrix(self, coordinates: np.ndarray) -> np.ndarray:
        """The ``k × d`` matrix with these coordinates."""
        return (np.asarray(coordinates, dtype=float) @ self.basis).reshape(self.labels.shape)

    def project(self, W: np.ndarray) -> np.ndarray:
        """The orthogonal projection of ``W`` on the fixed space: each orbit's entries set to their mean."""
        return self.matrix(self.coordinates(W))


def _block_name(sizes: Sequence[int], k: int) -> str:
    """``(k−1, 1) → "S_{k-1} x S_1"``: the largest block relative to ``k``, the others by size."""
    sizes = sorted(sizes, reverse=True)
    if sizes[0] == 1:
        return "trivial"
    largest = "S_k" if sizes[0] == k else f"S_{{k-{k - sizes[0]}}}"
    return " x ".join([largest] + [f"S_{p}" for p in sizes[1:]])


def fixed_space(blocks: Sequence[int], d: int | None = None) -> FixedSpace:
    """The fixed space of ``Δ(S_{p₁} × … × S_{p_r})`` (× ``S_{d−k}`` on the other columns).

    The group permutes rows and teacher columns ``i`` of each block of consecutive indices
    together, and the ``d − k`` other columns freely.  Orbits of an entry ``(i, j)``: for ``i`` in
    block ``A`` and ``j < k`` in block ``B``, one orbit for ``A ≠ B`` and two (diagonal,
    off-diagonal) for ``A = B`` (one for a block of size 1); for ``j ≥ k``, one orbit per block.
    ``Δ(S_{k−1} × S_1)`` with ``d = k`` has the five parameters ``(a, b, c, e, f)`` of
    :func:`five_parameter_point`.

    Parameters
    ----------
    blocks : sequence of int
        Block sizes ``p₁, …, p_r ≥ 1``, summing to ``k``.
    d : int, optional
        Number of inputs, ``≥ k``; default ``k``.

    Returns
    -------
    FixedSpace

    Raises
    ------
    ScenarioError
        Naming ``"blocks"`` or ``"d"``.

    Examples
    --------
    >>> fixed_space([5, 1]).dimension, fixed_space([4, 2]).dimension, fixed_space([5, 1], d=8).dimension
    (5, 6, 7)
    """
    sizes = [_size(f"blocks[{i}]", p) for i, p in enumerate(blocks)]
    if not sizes:
        raise ScenarioError("blocks", "must name at least one block")
    k, d = _dimensions(sum(sizes), d)
    block = np.repeat(np.arange(len(sizes)), sizes)
    orbit: dict[tuple[int, int, int], int] = {}
    labels = np.empty((k, d), dtype=int)
    for i in range(k):
        for j in range(d):
            # Columns past k are one block of their own (index −1); the diagonal is its own orbit.
            key = (int(block[i]), int(block[j]), int(i == j)) if j < k else (int(block[i]), -1, 0)
            labels[i, j] = orbit.setdefault(key, len(orbit))
    name = _block_name(sizes, k) + (" x S_{d-k}" if d > k + 1 else "")
    return FixedSpace(labels, name)


def five_parameter_point(
    k: int, a: float, b: float, c: float, e: float, f: float, d: int | None = None
) -> np.ndarray:
    """The ``Δ(S_{k−1} × S_1)``-invariant ``W = [[a I + b(J − I), c 1], [e 1ᵀ, f]]``, zero past column k.

    Examples
    --------
    >>> five_parameter_point(3, 1.0, 0.1, 0.2, 0.3, -0.5).tolist()
    [[1.0, 0.1, 0.2], [0.1, 1.0, 0.2], [0.3, 0.3, -0.5]]
    """
    k, d = _dimensions(_size("k", k, minimum=2), d)
    W = np.zeros((k, d))
    W[: k - 1, : k - 1] = b
    W[np.arange(k - 1), np.arange(k - 1)] = a
    W[: k - 1, k - 1] = c
    W[k - 1, : k - 1] = e
    W[k - 1, k - 1] = f
    return W


def flip_start(blocks: Sequence[int], d: int | None = None) -> np.ndarray:
    """The start "flip the last neurons": ``V`` with the diagonal of all blocks after the first set to −½.

    ``flip_start([k − 1, 1])`` is :func:`five_parameter_point` at ``(1, 0, 0, 0, −½)``, from which
    minimisation in the fixed space of ``Δ(S_{k−1} × S_1)`` finds the type-A family (a saddle for
    ``k ≤ 5``, a spurious minimum for ``k ≥ 6``); ``flip_start([k − 2, 2])`` flips two neurons, and
    so on.  The start is invariant under ``Δ(S_{p₁} × … × S_{p_r})``.

    Examples
    --------
    >>> flip_start([2, 1]).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -0.5]]
    """
    sizes = [_size(f"blocks[{i}]", p) for i, p in enumerate(blocks)]
    if not sizes:
        raise ScenarioError("blocks", "must name at least one block")
    k, d = _dimensions(sum(sizes), d)
    W = np.eye(k, d)
    flipped = np.arange(sizes[0], k)
    W[flipped, flipped] = -0.5
    return W


@dataclass(frozen=True)
class Isotropy:
    """The permutation symmetry of a point ``W``.

    Attributes
    ----------
    name : str
        ``"S_k"``, ``"S_{k-1} x S_1"``, ``"S_{k-2} x S_2"``, … from the sizes of the row orbits
        (largest first, relative to ``k``); ``"trivial"`` when no two rows can be exchanged.
        ``" x S_{d-k}"`` is appended when ``d − k ≥ 2`` and the ``d − k`` extra columns are all
        equal.  The diagonal (``π`` and ``ρ`` tied) is implied; see ``diagonal``.
    row_orbits : tuple of tuple of int
        The orbits of the rows (neurons), largest first.
    diagonal : bool
        ``True`` when no two rows are equal: every row permutation in the group moves columns too.
    equal_extra_columns : bool
        The ``d − k`` columns past the teacher's are all equal (vacuous for ``d = k``).
    """

    name: str
    row_orbits: tuple[tuple[int, ...], ...]
    diagonal: bool
    equal_extra_columns: bool

    @property
    def blocks(self) -> tuple[int, ...]:
        """Sizes of the row orbits, largest first."""
        return tuple(len(orbit) for orbit in self.row_orbits)


def _column_match(source: np.ndarray, target: np.ndarray, atol: float) -> bool:
    """Whether some permutation of the columns of ``source`` equals ``target`` to ``atol``."""
    cost = np.abs(source[:, :, None] - target[:, None, :]).max(axis=0)
    rows, cols = linear_sum_assignment(cost)
    return bool(cost[rows, cols].max() <= atol)


def isotropy(W: np.ndarray, *, atol: float = ISOTROPY_TOLERANCE) -> Isotropy:
    """The isotropy type of ``W`` under ``S_k × (S_k × S_{d−k})`` (the standard teacher's symmetry).

    Two rows ``i, i'`` are in one orbit when swapping them can be undone by a permutation of the
    columns that keeps the teacher's ``k`` columns among themselves (found by an assignment
    problem on the columns, each side separately); the row orbits are the connected components.
    The group found is the one generated by such transpositions: that is the whole isotropy for the
    groups ``Δ(S_{p₁} × … × S_{p_r})`` of the families here, not for isotropy without transpositions
    (a cyclic one, say).  Works on any conjugate ``P_π W P_ρᵀ`` of a symmetric point.

    Parameters
    ----------
    W : array_like
        ``k × d``, ``d ≥ k``.
    atol : float, default ISOTROPY_TOLERANCE
        Entries closer than this count as equal.

    Returns
    -------
    Isotropy

    Raises
    ------
    ScenarioError
        Naming ``"W"`` (shape, ``d < k``, non-finite) or ``"atol"``.

    Examples
    --------
    >>> import numpy as np
    >>> isotropy(np.eye(4)).name, isotropy(flip_start([3, 1])).name
    ('S_k', 'S_{k-1} x S_1')
    >>> isotropy(np.eye(4)[[1, 0, 2, 3]] @ flip_start([2, 2])).name  # a conjugate
    'S_{k-2} x S_2'
    """
    W = np.asarray(W, dtype=float)
    if W.ndim != 2 or 0 in W.shape or not np.all(np.isfinite(W)):
        raise ScenarioError("W", f"must be a finite non-empty 2-d array, not of shape {W.shape}")
    k, d = W.shape
    if d < k:
        raise ScenarioError("W", f"has d = {d} < k = {k} columns: the model needs d ≥ k")
    if not (atol >= 0.0 and math.isfinite(atol)):
        raise ScenarioError("atol", f"must be a finite number ≥ 0, not {atol!r}")
    parent = list(range(k))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    equal_rows = False
    for i in range(k):
        for j in range(i + 1, k):
            if root(i) == root(j):
                continue
            swapped = W.copy()
            swapped[[i, j]] = W[[j, i]]
            if _column_match(swapped[:, :k], W[:, :k], atol) and (
                d == k or _column_match(swapped[:, k:], W[:, k:], atol)
            ):
                parent[root(j)] = root(i)
    for i in range(k):
        for j in range(i + 1, k):
            equal_rows = equal_rows or bool(np.abs(W[i] - W[j]).max() <= atol)
    orbits: dict[int, list[int]] = {}
    for i in range(k):
        orbits.setdefault(root(i), []).append(i)
    row_orbits = tuple(sorted((tuple(o) for o in orbits.values()), key=lambda o: (-len(o), o)))
    extra = W[:, k:]
    equal_extra = bool(d - k < 2 or np.abs(extra - extra[:, :1]).max() <= atol)
    name = _block_name([len(o) for o in row_orbits], k)
    if d - k >= 2 and equal_extra:
        name += " x S_{d-k}"
    return Isotropy(name, row_orbits, not equal_rows, equal_extra)


def global_minimum_spectrum(k: int, d: int | None = None) -> np.ndarray:
    """The Hessian eigenvalues at the global minimum ``W = V = [I_k 0]``, in closed form, ascending.

    For ``k = d`` (``γ = 1/2π``; valid for ``k ≥ 3``, see below for ``k ≤ 2``):

    * ``1/4 − γ``, multiplicity ``k(k−1)/2``;
    * ``1/4 + γ``, multiplicity ``k(k−3)/2``;
    * ``λ± = ½[(k+2)/4 ± √(k²/16 − 1/π + 1/π²)]``, multiplicity ``k − 1`` each;
    * ``μ±``, the roots of ``μ² − Tμ + D`` with ``T = ½ + k/4 + kγ`` and
      ``D = (½ + (k−1)γ)(k/4 + γ) − (k−1)/16``.

    For ``d > k`` the spectrum is the ``k = d`` one above (on the teacher's ``k`` columns) together
    with, for the ``d − k`` other columns,

    * ``1/4``, multiplicity ``(k − 1)(d − k)``;
    * ``(k + 1)/4``, multiplicity ``d − k``.

    Derivation: at ``W = V`` the Hessian is ``E[g gᵀ]`` with ``g_i = 1[v_i·x > 0] x`` (the terms
    with the residual vanish), so its ``(i a, j b)`` entry is ``E[1[x_i > 0] 1[x_j > 0] x_a x_b]``.
    For ``a ≤ k < b`` it is 0 (``x_b`` is independent of the rest and centred), so the extra columns
    decouple from the teacher's; for ``a, b > k`` it is ``δ_ab P(x_i > 0, x_j > 0)``: ``d − k``
    copies of the ``k × k`` matrix ``(I + J)/4``, eigenvalues ``1/4`` (``k − 1`` times) and
    ``(k + 1)/4`` (its all-ones vector).  The block on the teacher's columns involves
    ``x_1 … x_k`` only and is the ``k = d`` Hessian.  The Hessian is positive definite for all
    ``d ≥ k``: there is no kernel.

    ``k = 2`` (where ``λ₋ = μ₋ = 1/4 + γ`` and the multiplicity of ``1/4 + γ`` is −1, so the list
    above holds as a signed count): ``1/4 − γ, 1/4 + γ, λ₊, μ₊``.  ``k = 1``: ``1/2``.

    Parameters
    ----------
    k : int
        Neurons, ``≥ 1``.
    d : int, optional
        Inputs, ``≥ k``; default ``k``.

    Returns
    -------
    numpy.ndarray
        The ``kd`` eigenvalues, ascending.

    Raises
    ------
    ScenarioError
        Naming ``"k"`` or ``"d"``.

    Examples
    --------
    >>> global_minimum_spectrum(1, 3).tolist()
    [0.5, 0.5, 0.5]
    """
    k, d = _dimensions(k, d)
    root = math.sqrt(k * k / 16.0 - 1.0 / math.pi + 1.0 / math.pi**2) if k >= 2 else 0.0
    lam_plus, lam_minus = 0.5 * ((k + 2) / 4.0 + root), 0.5 * ((k + 2) / 4.0 - root)
    T = 0.5 + k / 4.0 + k * _GAMMA
    D = (0.5 + (k - 1) * _GAMMA) * (k / 4.0 + _GAMMA) - (k - 1) / 16.0
    disc = math.sqrt(T * T - 4.0 * D)
    # μ₋ from the product of the roots: T − disc cancels digits when D ≪ T².
    mu_plus = 0.5 * (T + disc)
    mu_minus = D / mu_plus
    if k == 1:
        square = [0.5]
    elif k == 2:
        square = [0.25 - _GAMMA, 0.25 + _GAMMA, lam_plus, mu_plus]
    else:
        square = (
            [0.25 - _GAMMA] * (k * (k - 1) // 2)
            + [0.25 + _GAMMA] * (k * (k - 3) // 2)
            + [lam_plus, lam_minus] * (k - 1)
            + [mu_plus, mu_minus]
        )
    extra = [0.25] * ((k - 1) * (d - k)) + [(k + 1) / 4.0] * (d - k)
    return np.sort(np.array(square + extra))
