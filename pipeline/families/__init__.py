"""Model families: each declares its cube and its computations (:class:`~pipeline.families.base.Family`).

Registered by the name a sweep gives in its ``family`` key (default ``glm``).  Adding a family is one
module and one entry in :data:`FAMILIES`.
"""

from __future__ import annotations

from typing import Any

from pipeline.families.base import CellData, CellFailure, Family, Layout, Variable
from pipeline.families.glm import GLMFamily
from pipeline.families.pb import PBFamily
from pipeline.families.pbnet import PBNetFamily
from pipeline.families.relu import ReluFamily

__all__ = ["FAMILIES", "CellData", "CellFailure", "Family", "Layout", "Variable", "family_of"]

#: Every family, by name.
FAMILIES: dict[str, Family] = {
    family.name: family for family in (GLMFamily(), PBFamily(), PBNetFamily(), ReluFamily())
}


def family_of(spec: Any) -> Family:
    """The family of a validated sweep (its ``family`` attribute)."""
    return FAMILIES[spec.family]
