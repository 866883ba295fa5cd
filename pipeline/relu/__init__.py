"""The Arjevani–Field shallow ReLU model: population loss, exact Hessian, critical points and their symmetry.

Student ``x ↦ 1ᵀ relu(Wx)`` and teacher ``x ↦ 1ᵀ relu(Vx)`` (``W``, ``V`` of shape ``k × d``,
``d ≥ k``), ``x ~ N(0, I_d)`` (Arjevani & Field, NeurIPS 2020, arXiv:2008.01805; the mathematics is
in ``shared/theory/arjevani_field.md``):

* :mod:`~pipeline.relu.kernel`: :func:`loss`, :func:`gradient`, :func:`hessian` in closed form
  from the arc-cosine kernel;
* :mod:`~pipeline.relu.critical`: :func:`find_critical_point` (descent + Newton polishing,
  optionally in a fixed space), :func:`classify`, random-start :func:`survey`;
* :mod:`~pipeline.relu.symmetry`: :func:`fixed_space`, symmetric starts, :func:`isotropy`,
  :func:`global_minimum_spectrum`.

Beside them, imported on demand: :mod:`pipeline.relu.analysis` (the claims measured per ``k`` on a
relu cube: counts, growth slopes, multiplicities, the approach to the constants) and
:mod:`pipeline.relu.figures` (the spectra as ``k`` grows, with matplotlib).
"""

from pipeline.relu.critical import (
    Classification,
    CriticalPoint,
    SurveyResult,
    classify,
    find_critical_point,
    random_start,
    survey,
)
from pipeline.relu.kernel import check_pair, gradient, hessian, loss
from pipeline.relu.symmetry import (
    FixedSpace,
    Isotropy,
    five_parameter_point,
    fixed_space,
    flip_start,
    global_minimum_spectrum,
    isotropy,
    standard_teacher,
)

__all__ = [
    "Classification",
    "CriticalPoint",
    "FixedSpace",
    "Isotropy",
    "SurveyResult",
    "check_pair",
    "classify",
    "find_critical_point",
    "five_parameter_point",
    "fixed_space",
    "flip_start",
    "global_minimum_spectrum",
    "gradient",
    "hessian",
    "isotropy",
    "loss",
    "random_start",
    "standard_teacher",
    "survey",
]
