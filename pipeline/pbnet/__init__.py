"""Pennington & Bahri's network experiment (ICML 2017, Sec. 2 and 6.4): critical points of a tanh net.

``ŷ = W₂ tanh(W₁x)``, square (``n₀ = n₁ = n₂ = n``), no biases, fitted to Gaussian targets;
``shared/theory/pennington_bahri.md`` has the mathematics.

* :mod:`~pipeline.pbnet.network`: :func:`loss`, :func:`energy`, :func:`gradient`, the exact
  :func:`hessian` and its split :func:`hessian_parts` ``H = H₀ + H₁``, :func:`hessian_vector_product`;
* :mod:`~pipeline.pbnet.critical`: :func:`find_critical_point` (the paper's protocol: descent to a
  random level, then minimisation of ``‖∇L‖²``), :func:`survey` over ``φ``;
* :mod:`~pipeline.pbnet.fit`: :func:`fit_index_law`, ``α ≈ α₀(ε − ε_c)^{3/2}`` with ``ε_c`` free.
"""

from pipeline.pbnet.critical import (
    CONVERGENCE_TOLERANCE,
    ZERO_TOLERANCE,
    NetworkCriticalPoint,
    NetworkProblem,
    draw_problem,
    find_critical_point,
    negative_fraction,
    survey,
)
from pipeline.pbnet.fit import IndexFit, fit_index_law
from pipeline.pbnet.network import (
    energy,
    gradient,
    hessian,
    hessian_parts,
    hessian_vector_product,
    loss,
    loss_and_gradient,
)

__all__ = [
    "CONVERGENCE_TOLERANCE",
    "ZERO_TOLERANCE",
    "IndexFit",
    "NetworkCriticalPoint",
    "NetworkProblem",
    "draw_problem",
    "energy",
    "find_critical_point",
    "fit_index_law",
    "gradient",
    "hessian",
    "hessian_parts",
    "hessian_vector_product",
    "loss",
    "loss_and_gradient",
    "negative_fraction",
    "survey",
]
