"""Population loss, gradient and exact Hessian of the shallow ReLU model, from the arc-cosine kernel.

The student ``x ↦ 1ᵀ relu(Wx)`` (``W`` is ``k × d``) learns the teacher ``x ↦ 1ᵀ relu(Vx)`` under
``x ~ N(0, I_d)``; the population loss is

    L(W) = ½ Σ_ij f(w_i, w_j) − Σ_ij f(w_i, v_j) + ½ Σ_ij f(v_i, v_j),
    f(w, v) = E[relu(w·x) relu(v·x)] = (|w||v|/2π)(sin θ + (π − θ) cos θ),   θ = ∠(w, v).

Derivatives of ``f`` (``ŵ = w/|w|``, ``v̂ = v/|v|``, ``c = cos θ``, ``s = sin θ``, and ``n`` the unit
vector of ``v̂ − c ŵ``: orthogonal to ``ŵ`` in the plane of ``w`` and ``v``, pointing towards ``v``)::

    ∂f/∂w      = (1/2π)(|v| s ŵ + (π − θ) v)
    ∂²f/∂w²    = (|v| s / 2π|w|) (I − ŵŵᵀ + nnᵀ)
    ∂²f/∂w∂vᵀ  = (1/2π) ((π − θ) I + s c (ŵŵᵀ − nnᵀ) + s² (ŵnᵀ + nŵᵀ))

(the first from ``dθ/dw = −n/|w|`` and ``dŵ/dw = (I − ŵŵᵀ)/|w|``; the third, in the basis
``(ŵ, n)`` of the plane, is ``ŵnᵀ + v̂mᵀ`` with ``m`` the unit vector of ``ŵ − c v̂``; it is
computed as ``s (ppᵀ − qqᵀ)``, ``p`` and ``q`` the unit vectors of ``ŵ + v̂`` and ``v̂ − ŵ``).  Both
second derivatives are continuous at ``θ = 0`` and ``θ = π``, where ``n`` is undefined: every term
with ``n`` carries a factor ``s``, so ``∂²f/∂w² → 0`` at both, ``∂²f/∂w∂vᵀ → I/2`` at ``θ = 0`` and
``→ 0`` at ``θ = π``; there ``f`` is C² but not C³ (the second derivatives are Lipschitz, not
differentiable).  Keeping the factor ``s`` outside keeps the terms accurate near parallel pairs:
``n`` is only known to ``ε/s`` there, and its terms are multiplied by ``s``.

Because ``∂f/∂w(w, w) = w/2`` and ``∂²f/∂w∂vᵀ(w, w) = I/2`` are the self term's derivatives
(``f(w, w) = |w|²/2``), the gradient and the Hessian of ``L`` are sums over all pairs, self pairs
included:

    ∇_{w_i} L      = Σ_j ∂f/∂w(w_i, w_j) − Σ_j ∂f/∂w(w_i, v_j)
    ∇²_{w_i w_i} L = Σ_j ∂²f/∂w²(w_i, w_j) − Σ_j ∂²f/∂w²(w_i, v_j) + ∂²f/∂w∂vᵀ(w_i, w_i)
    ∇²_{w_i w_j} L = ∂²f/∂w∂vᵀ(w_i, w_j)      (i ≠ j)

All of it is vectorised over the ``k²`` pairs (arrays ``k × k × d``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.errors import ScenarioError

__all__ = ["check_pair", "gradient", "hessian", "loss"]

_TWO_PI = 2.0 * math.pi


def _matrix(name: str, value: np.ndarray) -> np.ndarray:
    """``value`` as a finite 2-d float array with rows of nonzero norm, or a ScenarioError."""
    array = np.asarray(value, dtype=float)
    if array.ndim != 2 or 0 in array.shape:
        raise ScenarioError(name, f"must be a non-empty 2-d array (k × d), not of shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ScenarioError(name, "has non-finite entries")
    norms = np.linalg.norm(array, axis=1)
    if np.any(norms == 0.0):
        # f(w, v) is not differentiable at w = 0 (its gradient there depends on the direction).
        rows = np.flatnonzero(norms == 0.0).tolist()
        raise ScenarioError(name, f"rows {rows} have zero norm: the loss is not differentiable there")
    return array


def check_pair(W: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a student and a teacher; return them as float arrays.

    Parameters
    ----------
    W, V : array_like
        Student and teacher, both ``k × d`` with ``d ≥ k``, finite, with no zero row.

    Returns
    -------
    W, V : numpy.ndarray

    Raises
    ------
    ScenarioError
        Naming ``"W"`` or ``"V"`` and what is wrong: shape, ``d < k``, a non-finite entry, a zero row.
    """
    W = _matrix("W", W)
    V = _matrix("V", V)
    if W.shape != V.shape:
        raise ScenarioError("W", f"has shape {W.shape}, the teacher V has shape {V.shape}")
    k, d = W.shape
    if d < k:
        raise ScenarioError("W", f"has d = {d} < k = {k} columns: the model needs d ≥ k")
    return W, V


@dataclass(frozen=True)
class _Pairs:
    """Geometry of every pair ``(a_i, b_j)`` of rows of two matrices ``A`` (``k × d``), ``B`` (``m × d``)."""

    norm_a: np.ndarray  # (k,)
    norm_b: np.ndarray  # (m,)
    unit_a: np.ndarray  # (k, d)
    unit_b: np.ndarray  # (m, d)
    theta: np.ndarray  # (k, m)
    sin: np.ndarray
    cos: np.ndarray
    toward: np.ndarray  # (k, m, d): b̂_j − â_i
    bisector: np.ndarray  # (k, m, d): â_i + b̂_j
    length_toward: np.ndarray  # (k, m): |b̂_j − â_i| = 2 sin(θ/2)
    length_bisector: np.ndarray  # (k, m): |â_i + b̂_j| = 2 cos(θ/2)

    @classmethod
    def of(cls, A: np.ndarray, B: np.ndarray) -> _Pairs:
        norm_a = np.linalg.norm(A, axis=1)
        norm_b = np.linalg.norm(B, axis=1)
        unit_a = A / norm_a[:, None]
        unit_b = B / norm_b[:, None]
        toward = unit_b[None, :, :] - unit_a[:, None, :]
        bisector = unit_b[None, :, :] + unit_a[:, None, :]
        length_toward = np.linalg.norm(toward, axis=2)
        length_bisector = np.linalg.norm(bisector, axis=2)
        # Kahan's angle θ = 2 atan2(|b̂ − â|, |b̂ + â|): accurate at every θ, where arccos(â·b̂) loses
        # half the digits near 0 and π.  Identical rows give θ = 0 exactly.
        theta = 2.0 * np.arctan2(length_toward, length_bisector)
        sin, cos = np.sin(theta), np.cos(theta)
        return cls(
            norm_a, norm_b, unit_a, unit_b, theta, sin, cos, toward, bisector, length_toward, length_bisector
        )

    def kernel(self) -> np.ndarray:
        """``f(a_i, b_j)``, shape ``(k, m)``."""
        shape = self.sin + (math.pi - self.theta) * self.cos
        return np.outer(self.norm_a, self.norm_b) * shape / _TWO_PI

    def first(self) -> np.ndarray:
        """``Σ_j ∂f/∂w(a_i, b_j)``, shape ``(k, d)``."""
        along_a = (self.sin @ self.norm_b)[:, None] * self.unit_a
        return (along_a + (math.pi - self.theta) @ (self.norm_b[:, None] * self.unit_b)) / _TWO_PI

    def second_same(self) -> np.ndarray:
        """``Σ_j ∂²f/∂w²(a_i, b_j)``, shape ``(k, d, d)``."""
        along = self.unit_b[None, :, :] - self.cos[:, :, None] * self.unit_a[:, None, :]
        length = np.linalg.norm(along, axis=2)
        # n = (b̂ − c â)/|b̂ − c â| is undefined for (anti)parallel pairs; its term carries a factor
        # sin θ = 0 there, so 0 is its continuous extension.
        weight = np.divide(np.sqrt(self.sin), length, out=np.zeros_like(length), where=length > 0.0)
        alpha = self.norm_b[None, :] / (_TWO_PI * self.norm_a[:, None])
        scaled = np.sqrt(alpha)[:, :, None] * weight[:, :, None] * along  # √(α s) n
        d = self.unit_a.shape[1]
        projector = np.eye(d)[None, :, :] - self.unit_a[:, :, None] * self.unit_a[:, None, :]
        total = (alpha * self.sin).sum(axis=1)
        return total[:, None, None] * projector + np.matmul(scaled.transpose(0, 2, 1), scaled)

    def second_mixed(self) -> np.ndarray:
        """``∂²f/∂w∂vᵀ(a_i, b_j)`` for all pairs, shape ``(k, d, m, d)`` (``W.ravel()`` order when B = A).

        In the basis ``(â, n)`` the rank-2 part ``s c (ââᵀ − nnᵀ) + s² (ânᵀ + nâᵀ)`` is ``s`` times a
        reflection, ``s (ppᵀ − qqᵀ)`` with ``p`` the unit bisector of ``â`` and ``b̂`` and ``q`` the
        unit vector of ``b̂ − â``: two outer products instead of four.
        """
        root = np.sqrt(self.sin)
        # p (q) is undefined at θ = π (0), where its factor sin θ is 0.
        zero = np.zeros_like(root)
        p_weight = np.divide(root, self.length_bisector, out=zero.copy(), where=self.length_bisector > 0)
        q_weight = np.divide(root, self.length_toward, out=zero, where=self.length_toward > 0)
        p = p_weight[:, :, None] * self.bisector  # (k, m, d)
        q = q_weight[:, :, None] * self.toward
        pt, qt = p.transpose(0, 2, 1), q.transpose(0, 2, 1)  # (k, d, m)
        block = pt[:, :, :, None] * p[:, None, :, :] - qt[:, :, :, None] * q[:, None, :, :]  # (k, d, m, d)
        idx = np.arange(p.shape[2])
        block[:, idx, :, idx] += (math.pi - self.theta)[None, :, :]
        return block / _TWO_PI


def loss(W: np.ndarray, V: np.ndarray) -> float:
    """The population loss ``L(W) = ½ E[(1ᵀrelu(Wx) − 1ᵀrelu(Vx))²]``, ``x ~ N(0, I_d)``.

    Parameters
    ----------
    W, V : array_like
        Student and teacher, ``k × d`` with ``d ≥ k``, no zero row.

    Returns
    -------
    float

    Raises
    ------
    ScenarioError
        Bad shapes, ``d < k``, non-finite entries or a zero row (see :func:`check_pair`).

    Examples
    --------
    >>> import numpy as np
    >>> loss(np.eye(3), np.eye(3))
    0.0
    >>> loss(-np.eye(2), np.eye(2))  # relu(−x) − relu(x) = −x: ½E[(x₁ + x₂)²] = 1
    1.0
    """
    W, V = check_pair(W, V)
    student = _Pairs.of(W, W).kernel().sum()
    cross = _Pairs.of(W, V).kernel().sum()
    teacher = _Pairs.of(V, V).kernel().sum()
    return float(0.5 * student - cross + 0.5 * teacher)


def gradient(W: np.ndarray, V: np.ndarray) -> np.ndarray:
    """The gradient of :func:`loss` in ``W``, shape ``k × d``.

    Parameters
    ----------
    W, V : array_like
        Student and teacher, ``k × d`` with ``d ≥ k``, no zero row.

    Returns
    -------
    numpy.ndarray
        ``∂L/∂W``, ``k × d``.

    Raises
    ------
    ScenarioError
        As :func:`loss`.

    Examples
    --------
    >>> import numpy as np
    >>> float(np.abs(gradient(np.eye(3), np.eye(3))).max())
    0.0
    """
    W, V = check_pair(W, V)
    return _Pairs.of(W, W).first() - _Pairs.of(W, V).first()


def hessian(W: np.ndarray, V: np.ndarray) -> np.ndarray:
    """The exact Hessian of :func:`loss` in ``W``, ``kd × kd``, rows and columns in ``W.ravel()`` order.

    Defined everywhere off zero rows, including at parallel and antiparallel pairs of rows
    (``θ = 0, π``), where ``f`` is only C²: the formulas are their continuous extensions there.

    Parameters
    ----------
    W, V : array_like
        Student and teacher, ``k × d`` with ``d ≥ k``, no zero row.

    Returns
    -------
    numpy.ndarray
        Symmetric ``kd × kd``: entry ``(i·d + a, j·d + b)`` is ``∂²L/∂W_ia ∂W_jb``.

    Raises
    ------
    ScenarioError
        As :func:`loss`.

    Examples
    --------
    At the global minimum the Hessian is ``E[g gᵀ]``, ``g_i = 1[v_i·x > 0] x``; for ``k = 1``
    that is ``E[1[x_1 > 0] x xᵀ] = I/2``:

    >>> import numpy as np
    >>> hessian(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]])).tolist()
    [[0.5, 0.0], [0.0, 0.5]]
    """
    W, V = check_pair(W, V)
    k, d = W.shape
    student = _Pairs.of(W, W)
    teacher = _Pairs.of(W, V)
    H = student.second_mixed()
    diagonal = student.second_same() - teacher.second_same()
    rows = np.arange(k)
    H[rows, :, rows, :] += diagonal
    H = H.reshape(k * d, k * d)
    # Exactly symmetric (the blocks are symmetric up to the order of rounding in their terms).
    return 0.5 * (H + H.T)
