"""The Pennington–Bahri random-matrix model of neural-network Hessians: theory and Monte Carlo.

``H = H₀ + H₁`` with ``H₀`` Marchenko–Pastur (ratio ``φ``, mean eigenvalue ``σ``) and ``H₁``
either a Wigner semicircle of variance ``2ε`` (``model="wigner"``, Sec. 4) or the block
off-diagonal product-Wishart of Sec. 6 (``model="product"``); ``shared/theory/pennington_bahri.md``.

* :func:`solve` — the limiting density, edges, atom, index ``α`` (the mass below 0);
* :func:`critical_energy` — ``ε_c(φ)`` in closed form, eqs. (21) and (32);
* :func:`sample` — the spectrum of one ``N × N`` matrix drawn from the model.

Beside them, imported on demand: :mod:`pipeline.pb.analysis` (the small-index law on the theory and
on the network experiment's cube) and :mod:`pipeline.pb.figures` (its figures, with matplotlib).
"""

from pipeline.pb._args import MODELS
from pipeline.pb.matrices import ZERO_TOLERANCE, PBSample, sample
from pipeline.pb.theory import PBTheory, critical_energy, solve

__all__ = ["MODELS", "ZERO_TOLERANCE", "PBSample", "PBTheory", "critical_energy", "sample", "solve"]
