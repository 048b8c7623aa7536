"""The post-steps after the nets: one :class:`PostSteps` object, the hybrid guided regression
(:mod:`.guided`), the back-projection (:mod:`.backproject`), the consistency QA (:mod:`.qa`) and
their seamless application over windows (:mod:`.window`). Array-library neutral (NumPy, CuPy,
torch), so they run where the nets ran."""

from __future__ import annotations

from .backproject import ITERATIONS, project
from .guided import DEFAULTS, GuidedConfig, blend, guides, regression
from .qa import ConsistencyQA, comparable, merge_qa
from .steps import DEFAULT, NONE, PostSteps, product
from .window import super_resolve_consistent

__all__ = [
    "DEFAULT",
    "product",
    "DEFAULTS",
    "ITERATIONS",
    "NONE",
    "ConsistencyQA",
    "GuidedConfig",
    "PostSteps",
    "blend",
    "comparable",
    "guides",
    "merge_qa",
    "project",
    "regression",
    "super_resolve_consistent",
]
