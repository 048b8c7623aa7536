"""The product's post-steps as one object: :class:`PostSteps`.

What follows the nets (the hybrid guided-regression blend, then the back-projection) is
described by one frozen value that travels from the options to the streaming loop, the COG
tags, the ``.s2sr.json`` records and the STAC items, and that decides whether an earlier
output was made the same way (:meth:`PostSteps.matches`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..bands import net_spec
from ..ops import Degradation, parse_protocol
from ..timing import stage
from . import backproject, guided
from .guided import DEFAULTS, GuidedConfig

#: The hybrid configuration every output made before configurations were recorded used.
_LEGACY_GUIDED = (("net20", GuidedConfig(1, 30.0, 0.4)), ("net60", GuidedConfig(1, 300.0, 0.6)))


def _default_guided() -> tuple[tuple[str, GuidedConfig], ...]:
    return tuple(sorted(DEFAULTS.items()))


@dataclass(frozen=True)
class PostSteps:
    """The post-steps after the nets, and everything derived from them (margins, tags, records).

    ``backproject``: back-projection iterations (-1: none); ``hybrid``: blend with the local
    guided regression first (per-net :class:`~s2sr_cloud.post.guided.GuidedConfig` in
    ``guided``); ``operator``: the degradation both use (``wald`` by default).
    """

    backproject: int = backproject.ITERATIONS
    hybrid: bool = True
    guided: tuple[tuple[str, GuidedConfig], ...] = field(default_factory=_default_guided)
    operator: str = "wald"

    def __post_init__(self) -> None:
        if not isinstance(self.backproject, int) or isinstance(self.backproject, bool) or not -1 <= self.backproject <= 50:
            raise ValueError(f"back-projection iterations must be an integer from -1 (none) to 50, got {self.backproject!r}")
        if parse_protocol(self.operator).per_band:
            raise ValueError(f"the post-steps take one operator for every band (wald, bicubic or gaussian:SIGMA), not {self.operator!r}")

    # ------------------------------------------------------------------ what runs
    @property
    def active(self) -> bool:
        """Whether any post-step runs (False: the raw nets)."""
        return self.backproject >= 0 or self.hybrid

    @property
    def degradation(self) -> Degradation:
        return parse_protocol(self.operator)

    def config(self, net: str) -> GuidedConfig:
        """The hybrid configuration of ``net``."""
        name = net_spec(net).name
        for n, cfg in self.guided:
            if n == name:
                return cfg
        return DEFAULTS[name]

    def blends(self, net: str) -> bool:
        """Whether the hybrid blend runs for ``net`` (on, with a weight above 0)."""
        return self.hybrid and self.config(net).weight > 0

    def margin10(self, nets: Iterable[str]) -> int:
        """10 m pixels a window is extended by so that its post-stepped values are exact
        (``nets``: the nets' names, e.g. a runners mapping)."""
        margins = [0]
        for n in nets:
            s = net_spec(n).factor
            m = backproject.margin10(s, self.backproject) if self.backproject >= 0 else 0
            if self.blends(n):
                m += guided.margin10(s, self.config(n).radius)
            margins.append(m)
        return max(margins)

    def finish(self, net: str, sr: Any, lr: Any, *, b10: Any | None = None, b20: Any | None = None) -> Any:
        """The post-steps on one net's raw output ``sr`` (C, H, W) over a whole window: the hybrid
        blend (needs the window's 10 m bands ``b10`` and, for the 60 m net, its 20 m bands ``b20``),
        then the back-projection of ``lr``. Any array library; returns a new float32 array."""
        from ..ops import namespace

        s = net_spec(net).factor
        op = self.degradation
        out = sr
        if self.blends(net):
            if b10 is None:
                raise ValueError("the hybrid post-step needs the 10 m bands")
            with stage("hybrid"):
                out = guided.blend(out, guided.guides(net, b10, b20), lr, s, self.config(net), op)
        if self.backproject >= 0:
            with stage("backproject"):
                out = backproject.project(out, lr, s, self.backproject, op)
        if out is sr:
            xp = namespace(sr)
            out = xp.astype(sr, xp.float32, copy=True)
        return out

    # ------------------------------------------------------------------ what is recorded
    def hybrid_tag(self, nets: Iterable[str]) -> str:
        """``net=radius/ridge/weight`` of each net's blend, or ``off``."""
        if not self.hybrid:
            return "off"
        return ",".join(f"{n}={c.radius}/{c.ridge:g}/{c.weight:g}" for n in nets for c in [self.config(n)])

    def tags(self, nets: Iterable[str]) -> dict[str, str]:
        """The COG tags that describe the post-steps."""
        nets = list(nets)
        tags = {"S2SR_BACKPROJECT": str(self.backproject), "S2SR_HYBRID": self.hybrid_tag(nets)}
        if self.operator != "wald":
            tags["S2SR_POST_OPERATOR"] = self.operator
        return tags

    def record(self) -> dict[str, Any]:
        """What a ``.s2sr.json`` record and a STAC item store (the two legacy keys, plus ``post``)."""
        return {
            "backproject": self.backproject,
            "hybrid": self.hybrid,
            "post": {"backproject": self.backproject, "hybrid": self.hybrid, "operator": self.operator,
                     "guided": {n: [c.radius, c.ridge, c.weight] for n, c in self.guided} if self.hybrid else {}},
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> PostSteps:
        """The post-steps a record describes (records without ``post``: the legacy defaults)."""
        post = record.get("post")
        if isinstance(post, Mapping):
            g = post.get("guided") or {}
            cfgs = tuple(sorted((str(n), GuidedConfig(int(v[0]), float(v[1]), float(v[2]))) for n, v in g.items()))
            return cls(int(post.get("backproject", -1)), bool(post.get("hybrid", False)),
                       cfgs or _default_guided(), str(post.get("operator", "wald")))
        return cls(int(record.get("backproject", -1)), bool(record.get("hybrid", False)), _LEGACY_GUIDED)

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether a stored record was made with these post-steps (the "done before" rule's part).
        Unreadable values never match."""
        try:
            other = PostSteps.from_record(record)
        except (TypeError, ValueError, IndexError, KeyError):
            return False
        if (other.backproject, other.hybrid, other.operator) != (self.backproject, self.hybrid, self.operator):
            return False
        return not self.hybrid or dict(other.guided) == dict(self.guided)


#: The raw nets: no post-step.
NONE = PostSteps(backproject=-1, hybrid=False)
#: The default output.
DEFAULT = PostSteps()

