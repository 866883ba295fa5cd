"""Loss, gradient and exact Hessian of the one-hidden-layer tanh network of Pennington & Bahri (Sec. 2).

The network ``ŷ = W₂ tanh(W₁x)`` (no biases; ``W₁`` is ``n₁ × n₀``, ``W₂`` is ``n₂ × n₁``) is fitted
to targets ``Y`` (``n₂ × m``) from inputs ``X`` (``n₀ × m``) by

    L = (1/2m) Σ_{iμ} e²_{iμ},     e = ŷ − y,     ε = L/n₂.

With ``Y`` i.i.d. N(0, 1) the zero network has ``L = (1/2m) Σ y² ≈ n₂/2``, so ``ε ≈ ½``: the
paper's normalisation.  The parameters are one flat vector ``θ = [W₁.ravel(), W₂.ravel()]``
(C order: ``W₁[a, b]`` is entry ``a n₀ + b``, ``W₂[k, c]`` entry ``n₁n₀ + k n₁ + c``); the paper's
network is square, ``n₀ = n₁ = n₂ = n`` and ``2n²`` parameters, but any shapes work here (``n₁``
is read off ``len(θ)``).

With ``A = W₁X``, ``Z = tanh A``, ``S = 1 − Z²`` (``tanh'``), ``Z'' = −2ZS`` (``tanh''``) and the
back-propagated residual ``B = W₂ᵀE``, all ``n₁ × m``:

    ∇_{W₂} L = E Zᵀ/m,        ∇_{W₁} L = (B ⊙ S) Xᵀ/m.

The Hessian splits exactly as ``H = H₀ + H₁``.  ``H₀ = JᵀJ/m`` (Gauss–Newton, ``J`` the Jacobian
of ``ŷ``, positive semidefinite), with ``K[(a,b), μ] = S[a,μ] X[b,μ]``:

    H₀[W₁ab, W₁cd] = (W₂ᵀW₂)[a,c] (KKᵀ/m)[(a,b),(c,d)]
    H₀[W₁ab, W₂kc] = W₂[k,a] (KZᵀ/m)[(a,b), c]
    H₀[W₂ka, W₂lb] = δ_kl (ZZᵀ/m)[a,b]

``H₁ = (1/m) Σ e_{iμ} ∂²ŷ_{iμ}`` (all the residual dependence; ``ŷ`` is linear in ``W₂``):

    H₁[W₁ab, W₁cd] = δ_ac (1/m) Σ_μ B[a,μ] Z''[a,μ] X[b,μ] X[d,μ]
    H₁[W₁ab, W₂kc] = δ_ac (KEᵀ/m)[(a,b), k]
    H₁[W₂, W₂]     = 0.

Each block is a few BLAS products of ``n₁n₀ × m`` or ``n₁ × m`` arrays: no loop over parameters.
The product ``Hv`` (:func:`hessian_vector_product`, used for ``∇‖∇L‖² = 2H∇L``) is the directional
derivative of the gradient, ``O(n²m)`` without forming ``H``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.errors import ScenarioError

__all__ = [
    "energy",
    "gradient",
    "hessian",
    "hessian_parts",
    "hessian_vector_product",
    "loss",
    "loss_and_gradient",
]


@dataclass(frozen=True, eq=False)
class _Forward:
    """The forward pass at ``θ`` and what every derivative reuses."""

    X: np.ndarray  # (n0, m)
    W1: np.ndarray  # (n1, n0)
    W2: np.ndarray  # (n2, n1)
    Z: np.ndarray  # tanh(W1 X), (n1, m)
    S: np.ndarray  # tanh' = 1 − Z², (n1, m)
    E: np.ndarray  # residuals ŷ − y, (n2, m)

    @property
    def m(self) -> int:
        return self.X.shape[1]

    @property
    def loss(self) -> float:
        return float(0.5 / self.m * np.vdot(self.E, self.E))

    def gradient(self) -> np.ndarray:
        B = self.W2.T @ self.E
        g1 = ((B * self.S) @ self.X.T) / self.m
        g2 = (self.E @ self.Z.T) / self.m
        return np.concatenate([g1.ravel(), g2.ravel()])


def _forward(theta: np.ndarray, X: np.ndarray, Y: np.ndarray) -> _Forward:
    """Validate ``θ, X, Y`` and run the network forward."""
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float)
    theta = np.asarray(theta, dtype=float)
    if X.ndim != 2 or 0 in X.shape:
        raise ScenarioError("X", f"must be a non-empty 2-d array (n0 × m), not of shape {X.shape}")
    if Y.ndim != 2 or Y.shape[1] != X.shape[1] or Y.shape[0] == 0:
        raise ScenarioError("Y", f"must be n2 × m with m = {X.shape[1]} columns as X, not {Y.shape}")
    n0, n2 = X.shape[0], Y.shape[0]
    if theta.ndim != 1 or theta.size == 0 or theta.size % (n0 + n2) != 0:
        reason = f"must be a flat vector of n1·(n0 + n2) entries with n0 + n2 = {n0 + n2}, not {theta.shape}"
        raise ScenarioError("theta", reason)
    n1 = theta.size // (n0 + n2)
    W1 = theta[: n1 * n0].reshape(n1, n0)
    W2 = theta[n1 * n0 :].reshape(n2, n1)
    Z = np.tanh(W1 @ X)
    return _Forward(X, W1, W2, Z, 1.0 - Z * Z, W2 @ Z - Y)


def _split(forward: _Forward, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A flat direction ``v`` as the pair of matrices ``(V₁, V₂)`` shaped like ``(W₁, W₂)``."""
    v = np.asarray(v, dtype=float)
    n1n0 = forward.W1.size
    if v.shape != (n1n0 + forward.W2.size,):
        raise ScenarioError("v", f"must be a flat vector of {n1n0 + forward.W2.size} entries, not {v.shape}")
    return v[:n1n0].reshape(forward.W1.shape), v[n1n0:].reshape(forward.W2.shape)


def loss(theta: np.ndarray, X: np.ndarray, Y: np.ndarray) -> float:
    """The loss ``L = (1/2m) Σ (ŷ − y)²`` of the network ``ŷ = W₂ tanh(W₁x)``.

    Parameters
    ----------
    theta : array_like
        ``[W₁.ravel(), W₂.ravel()]``, ``n₁(n₀ + n₂)`` entries.
    X : array_like
        Inputs, ``n₀ × m`` (one sample per column).
    Y : array_like
        Targets, ``n₂ × m``.

    Returns
    -------
    float

    Raises
    ------
    ScenarioError
        Naming ``"theta"``, ``"X"`` or ``"Y"`` when the shapes do not fit together.

    See Also
    --------
    energy : ``L/n₂``, the paper's ε.

    Examples
    --------
    >>> import numpy as np
    >>> loss(np.zeros(8), np.ones((2, 3)), np.full((2, 3), 2.0))  # (1/6)·6·4
    4.0
    """
    return _forward(theta, X, Y).loss


def energy(theta: np.ndarray, X: np.ndarray, Y: np.ndarray) -> float:
    """The paper's energy ``ε = L/n₂`` (``½`` for the zero network on N(0, 1) targets, in expectation).

    Parameters
    ----------
    theta, X, Y : array_like
        As in :func:`loss`.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> energy(np.zeros(8), np.ones((2, 3)), np.full((2, 3), 2.0))
    2.0
    """
    forward = _forward(theta, X, Y)
    return forward.loss / forward.E.shape[0]


def gradient(theta: np.ndarray, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """The gradient ``∇L`` as a flat vector ordered like ``θ``.

    Parameters
    ----------
    theta, X, Y : array_like
        As in :func:`loss`.

    Returns
    -------
    numpy.ndarray
        ``[(∇_{W₁}L).ravel(), (∇_{W₂}L).ravel()]``.

    Examples
    --------
    >>> import numpy as np
    >>> gradient(np.zeros(8), np.ones((2, 3)), np.ones((2, 3))).tolist()  # θ = 0 is critical
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    """
    return _forward(theta, X, Y).gradient()


def loss_and_gradient(theta: np.ndarray, X: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray]:
    """``(loss, gradient)`` from one forward pass, for optimisers.

    Parameters
    ----------
    theta, X, Y : array_like
        As in :func:`loss`.

    Returns
    -------
    value : float
    grad : numpy.ndarray
    """
    forward = _forward(theta, X, Y)
    return forward.loss, forward.gradient()


def hessian_vector_product(theta: np.ndarray, X: np.ndarray, Y: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``Hv``, the derivative of ``∇L`` along ``v``, without forming ``H``.

    With ``V₁, V₂`` the parts of ``v``, ``δA = V₁X``, ``δZ = S ⊙ δA`` and ``δŷ = V₂Z + W₂δZ``:
    ``(Hv)_{W₂} = (δŷ Zᵀ + E δZᵀ)/m`` and
    ``(Hv)_{W₁} = ((W₂ᵀδŷ + V₂ᵀE) ⊙ S + B ⊙ Z'' ⊙ δA) Xᵀ/m``.

    Parameters
    ----------
    theta, X, Y : array_like
        As in :func:`loss`.
    v : array_like
        A direction, shaped like ``θ``.

    Returns
    -------
    numpy.ndarray
        ``H(θ) v``, shaped like ``θ``.

    Raises
    ------
    ScenarioError
        As :func:`loss`, or naming ``"v"`` when its shape is not ``θ``'s.
    """
    forward = _forward(theta, X, Y)
    return _hessian_vector_product(forward, *_split(forward, v))


def _hessian_vector_product(f: _Forward, V1: np.ndarray, V2: np.ndarray) -> np.ndarray:
    dA = V1 @ f.X
    dZ = f.S * dA
    dY = V2 @ f.Z + f.W2 @ dZ
    inner = (f.W2.T @ dY + V2.T @ f.E) * f.S - 2.0 * (f.W2.T @ f.E) * f.Z * dZ
    h1 = (inner @ f.X.T) / f.m
    h2 = (dY @ f.Z.T + f.E @ dZ.T) / f.m
    return np.concatenate([h1.ravel(), h2.ravel()])


def hessian_parts(theta: np.ndarray, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact split ``H = H₀ + H₁``: Gauss–Newton part and residual part.

    Parameters
    ----------
    theta, X, Y : array_like
        As in :func:`loss`.

    Returns
    -------
    H0 : numpy.ndarray
        ``JᵀJ/m``, positive semidefinite, ``P × P`` with ``P = len(θ)``.
    H1 : numpy.ndarray
        ``(1/m) Σ e_{iμ} ∇²ŷ_{iμ}``, zero on the ``W₂ × W₂`` block.

    Both are exactly symmetric.

    See Also
    --------
    hessian : ``H₀ + H₁``.

    Examples
    --------
    >>> import numpy as np
    >>> H0, H1 = hessian_parts(np.zeros(8), np.ones((2, 3)), np.ones((2, 3)))
    >>> float(np.abs(H0).max()), float(np.abs(H1).max())  # at θ = 0, H₀ = 0 and H₁ = −YXᵀ/m off-diagonal
    (0.0, 1.0)
    """
    f = _forward(theta, X, Y)
    n1, n0 = f.W1.shape
    n2 = f.W2.shape[0]
    m = f.m
    p1 = n1 * n0
    K = (f.S[:, None, :] * f.X[None, :, :]).reshape(p1, m)
    H0 = np.empty((p1 + n2 * n1, p1 + n2 * n1))
    H1 = np.zeros_like(H0)

    gram = (K @ K.T) / m
    W2tW2 = f.W2.T @ f.W2
    H0[:p1, :p1] = (gram.reshape(n1, n0, n1, n0) * W2tW2[:, None, :, None]).reshape(p1, p1)
    cross = ((K @ f.Z.T) / m).reshape(n1, n0, n1)
    H0[:p1, p1:] = np.einsum("ka,abc->abkc", f.W2, cross).reshape(p1, n2 * n1)
    H0[p1:, :p1] = H0[:p1, p1:].T
    H0[p1:, p1:] = np.kron(np.eye(n2), (f.Z @ f.Z.T) / m)

    units = np.arange(n1)
    curvature = -2.0 * (f.W2.T @ f.E) * f.Z * f.S  # B ⊙ Z'', (n1, m)
    diagonal = np.matmul(curvature[:, None, :] * f.X[None, :, :], f.X.T) / m  # (n1, n0, n0)
    block11 = H1[:p1, :p1].reshape(n1, n0, n1, n0)
    block11[units, :, units, :] = diagonal
    block12 = H1[:p1, p1:].reshape(n1, n0, n2, n1)
    block12[units, :, :, units] = ((K @ f.E.T) / m).reshape(n1, n0, n2)
    H1[p1:, :p1] = H1[:p1, p1:].T
    # gemm rounds A·Aᵀ's two triangles differently (by ~1e-17): the mean of H and Hᵀ is symmetric
    # exactly, as a Hessian is, so every consumer sees the same matrix whichever triangle it reads.
    return 0.5 * (H0 + H0.T), 0.5 * (H1 + H1.T)


def hessian(theta: np.ndarray, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """The exact Hessian ``∇²L`` (``P × P``, ``P = len(θ)``), analytic.

    Parameters
    ----------
    theta, X, Y : array_like
        As in :func:`loss`.

    Returns
    -------
    numpy.ndarray
        ``H₀ + H₁`` (see :func:`hessian_parts`), symmetric.

    Examples
    --------
    >>> import numpy as np
    >>> H = hessian(np.zeros(8), np.ones((2, 3)), np.ones((2, 3)))
    >>> (np.linalg.eigvalsh(H).round(12) + 0.0).tolist()  # θ = 0: only H₁'s W₁–W₂ block, ±2 per unit
    [-2.0, -2.0, 0.0, 0.0, 0.0, 0.0, 2.0, 2.0]
    """
    H0, H1 = hessian_parts(theta, X, Y)
    H0 += H1
    return H0
