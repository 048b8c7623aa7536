"""The product's post-steps as one object: :class:`PostSteps`.

What follows the nets (the hybrid guided-regression blend, then the back-projection) is
described by one frozen value that travels from the options to the streaming loop, the COG
tags, the ``.s2sr.json`` records and the STAC items, and that decides whether an earlier
output was made the same way (:meth:`PostSteps.matches`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..bands import NETS, net_spec
from ..ops import Degradation, parse_protocol
from ..timing import stage
from . import backproject, guided
from .guided import DEFAULTS, GuidedConfig

#: The operator estimated from each scene (:mod:`s2sr_cloud.post.estimate`).
AUTO = "auto"
#: The hybrid configuration every output made before configurations were recorded used.
_LEGACY_GUIDED = (("net20", GuidedConfig(1, 30.0, 0.4)), ("net60", GuidedConfig(1, 300.0, 0.6)))


def _estimated(value: str | float) -> str:
    """An ``auto`` estimate as an operator name: ``gaussian:SIGMA`` (a number is a Gaussian's width) or ``bicubic``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"gaussian:{round(float(value), 3):g}"
    op = parse_protocol(str(value))
    if op.kind not in ("gaussian", "bicubic"):
        raise ValueError(f"an auto operator is estimated as gaussian:SIGMA or bicubic, not {value!r}")
    return op.name


def _default_guided() -> tuple[tuple[str, GuidedConfig], ...]:
    return tuple(sorted(DEFAULTS.items()))


@dataclass(frozen=True)
class PostSteps:
    """The post-steps after the nets, and everything derived from them (margins, tags, records).

    ``backproject``: back-projection iterations (-1: none); ``hybrid``: blend with the local
    guided regression first (per-net :class:`~s2sr_cloud.post.guided.GuidedConfig` in
    ``guided``); ``operator``: the degradation both use (``wald`` by default); ``per_net``:
    ``(net, iterations, operator)`` that replace ``backproject`` and ``operator`` for that net
    (the product default sets both nets: :data:`DEFAULT`).
    """

    backproject: int = backproject.ITERATIONS
    hybrid: bool = True
    guided: tuple[tuple[str, GuidedConfig], ...] = field(default_factory=_default_guided)
    operator: str = "wald"
    per_net: tuple[tuple[str, int, str], ...] = ()
    resolved: tuple[tuple[str, str], ...] = ()
    """``(net, operator)``: what each ``auto`` operator was estimated to be for the scene being
    processed (``gaussian:SIGMA`` or ``bicubic``; :func:`s2sr_cloud.post.estimate.resolve`; empty
    until then)."""

    def __post_init__(self) -> None:
        for bp, op in [(self.backproject, self.operator), *((b, o) for _, b, o in self.per_net)]:
            if not isinstance(bp, int) or isinstance(bp, bool) or not -1 <= bp <= 50:
                raise ValueError(f"back-projection iterations must be an integer from -1 (none) to 50, got {bp!r}")
            if op != AUTO and parse_protocol(op).per_band:
                raise ValueError(f"the post-steps take one operator for every band (auto, wald, bicubic or gaussian:SIGMA), not {op!r}")
        object.__setattr__(self, "per_net", tuple(sorted((net_spec(n).name, b, o) for n, b, o in self.per_net)))
        object.__setattr__(self, "resolved", tuple(sorted((net_spec(n).name, _estimated(v)) for n, v in self.resolved)))

    def _own(self, net: str) -> tuple[int, str] | None:
        name = net_spec(net).name
        return next(((b, o) for n, b, o in self.per_net if n == name), None)

    def iterations(self, net: str) -> int:
        """Back-projection iterations of ``net`` (-1: none)."""
        own = self._own(net)
        return self.backproject if own is None else own[0]

    def operator_of(self, net: str) -> str:
        """The degradation ``net``'s hybrid blend and back-projection assume."""
        own = self._own(net)
        return self.operator if own is None else own[1]

    @property
    def max_iterations(self) -> int:
        """The most back-projection iterations any net gets (the records' legacy ``backproject`` key)."""
        return max(self.iterations(n) for n in NETS)

    def with_backproject(self, iterations: int) -> PostSteps:
        """The same post-steps with ``iterations`` back-projection iterations for every net
        (``--backproject N``; each net keeps its operator)."""
        return replace(self, backproject=iterations, per_net=tuple((n, iterations, o) for n, _, o in self.per_net))

    # ------------------------------------------------------------------ what runs
    @property
    def active(self) -> bool:
        """Whether any post-step runs (False: the raw nets)."""
        return self.max_iterations >= 0 or self.hybrid

    def wants_estimate(self, net: str) -> bool:
        """Whether ``net``'s post-steps run with the ``auto`` operator not yet estimated."""
        runs = self.iterations(net) >= 0 or self.blends(net)
        return runs and self.operator_of(net) == AUTO and net_spec(net).name not in dict(self.resolved)

    def wants_any_estimate(self, nets: Iterable[str]) -> bool:
        """Whether any of ``nets`` :meth:`wants_estimate` (what a caller checks before reading the scene for it)."""
        return any(self.wants_estimate(n) for n in nets)

    def with_resolved(self, found: Mapping[str, str | float]) -> PostSteps:
        """The same post-steps with the ``auto`` operators ``found`` of one scene (net → ``gaussian:SIGMA``,
        ``bicubic``, or a Gaussian's width in LR pixels)."""
        return replace(self, resolved=tuple({**dict(self.resolved), **{net_spec(n).name: _estimated(v) for n, v in found.items()}}.items()))

    def effective_operator(self, net: str) -> str:
        """The operator ``net``'s post-steps run with: :meth:`operator_of`, ``auto`` replaced by its estimate."""
        op = self.operator_of(net)
        if op != AUTO:
            return op
        found = dict(self.resolved).get(net_spec(net).name)
        if found is None:
            raise ValueError(f"the auto operator of {net_spec(net).name} is not estimated yet: "
                             "resolve the post-steps on the scene first (s2sr_cloud.post.estimate.resolve)")
        return found

    def degradation(self, net: str) -> Degradation:
        """The operator ``net``'s post-steps run with (:meth:`effective_operator`), parsed."""
        return parse_protocol(self.effective_operator(net))

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
            it = self.iterations(n)
            reach = backproject.op_reach(self._widest(n), s)
            m = backproject.margin10(s, it, reach) if it >= 0 else 0
            if self.blends(n):
                m += guided.margin10(s, self.config(n).radius, reach)
            margins.append(m)
        return max(margins)

    def _widest(self, net: str) -> Degradation:
        """The operator of ``net``, or for an ``auto`` one not estimated yet the widest it can become."""
        if self.wants_estimate(net):
            from .estimate import LIMITS

            s = net_spec(net).factor
            return max((Degradation("gaussian", LIMITS[1]), Degradation("bicubic")), key=lambda d: d.reach(s))
        return self.degradation(net)

    def finish(self, net: str, sr: Any, lr: Any, *, b10: Any | None = None, b20: Any | None = None) -> Any:
        """The post-steps on one net's raw output ``sr`` (C, H, W) over a whole window: the hybrid
        blend (needs the window's 10 m bands ``b10`` and, for the 60 m net, its 20 m bands ``b20``),
        then the back-projection of ``lr``. Any array library; returns a new float32 array."""
        from ..ops import namespace

        s = net_spec(net).factor
        op = self.degradation(net)
        iterations = self.iterations(net)
        out = sr
        if self.blends(net):
            if b10 is None:
                raise ValueError("the hybrid post-step needs the 10 m bands")
            with stage("hybrid"):
                out = guided.blend(out, guided.guides(net, b10, b20), lr, s, self.config(net), op)
        if iterations >= 0:
            with stage("backproject"):
                out = backproject.project(out, lr, s, iterations, op)
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
        tags = {"S2SR_BACKPROJECT": self._per_net_tag(nets, self.iterations), "S2SR_HYBRID": self.hybrid_tag(nets)}
        if any(self.operator_of(n) != "wald" for n in nets):
            tags["S2SR_POST_OPERATOR"] = self._per_net_tag(nets, self._operator_tag)
        return tags

    def _operator_tag(self, net: str) -> str:
        """``operator_of``, with an ``auto`` operator's estimate: ``auto(gaussian:0.36)``, ``auto(bicubic)``."""
        op = self.operator_of(net)
        found = dict(self.resolved).get(net_spec(net).name)
        return f"{op}({found})" if op == AUTO and found is not None else op

    @staticmethod
    def _per_net_tag(nets: list[str], value: Any) -> str:
        """``value(net)`` when every net has the same, else ``net=value`` for each."""
        vals = [str(value(n)) for n in nets]
        return vals[0] if len(set(vals)) == 1 else ",".join(f"{n}={v}" for n, v in zip(nets, vals, strict=True))

    def record(self) -> dict[str, Any]:
        """What a ``.s2sr.json`` record and a STAC item store (the two legacy keys, plus ``post``)."""
        post: dict[str, Any] = {"backproject": self.backproject, "hybrid": self.hybrid, "operator": self.operator,
                                "guided": {n: [c.radius, c.ridge, c.weight] for n, c in self.guided} if self.hybrid else {}}
        if self.per_net:
            post["per_net"] = {n: [b, o] for n, b, o in self.per_net}
        if self.resolved:
            post["resolved"] = dict(self.resolved)
        return {"backproject": self.max_iterations, "hybrid": self.hybrid, "post": post}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> PostSteps:
        """The post-steps a record describes (records without ``post``: the legacy defaults)."""
        post = record.get("post")
        if isinstance(post, Mapping):
            g = post.get("guided") or {}
            cfgs = tuple(sorted((str(n), GuidedConfig(int(v[0]), float(v[1]), float(v[2]))) for n, v in g.items()))
            per = post.get("per_net") or {}
            res = post.get("resolved") or {}
            return cls(int(post.get("backproject", -1)), bool(post.get("hybrid", False)),
                       cfgs or _default_guided(), str(post.get("operator", "wald")),
                       tuple((str(n), int(v[0]), str(v[1])) for n, v in per.items()),
                       tuple((str(n), v) for n, v in res.items()))
        return cls(int(record.get("backproject", -1)), bool(record.get("hybrid", False)), _LEGACY_GUIDED)

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether a stored record was made with these post-steps (the "done before" rule's part).
        Unreadable values never match."""
        try:
            other = PostSteps.from_record(record)
        except (TypeError, ValueError, IndexError, KeyError):
            return False
        if other.hybrid != self.hybrid or any((other.iterations(n), other.operator_of(n)) != (self.iterations(n), self.operator_of(n))
                                              for n in NETS):
            return False
        return not self.hybrid or dict(other.guided) == dict(self.guided)


#: The raw nets: no post-step.
NONE = PostSteps(backproject=-1, hybrid=False)
#: Each net's back-projection iterations and operator in the default output, chosen on the validation
#: set by the mean RMSE over degradation protocols (``scripts/post_sweep.py``, ``docs/model-card.md``).
#: 20 m: two iterations (after the hybrid blend); 60 m: one iteration, no hybrid blend (its weight is 0:
#: it did not help on average over the protocols). Both under the ``auto`` operator: the Gaussian the
#: scene's own bands say relates them to the finer ones (:mod:`s2sr_cloud.post.estimate`).
DEFAULT_PER_NET: tuple[tuple[str, int, str], ...] = (("net20", 2, "auto"), ("net60", 1, "auto"))
#: The default output.
DEFAULT = PostSteps(per_net=DEFAULT_PER_NET)


def product(backproject: int | None = None, hybrid: bool = True) -> PostSteps:
    """The product's post-steps for the command-line options: :data:`DEFAULT` (``hybrid`` on or off),
    with ``backproject`` iterations for every net when given (``--backproject N``)."""
    post = DEFAULT if hybrid else replace(DEFAULT, hybrid=False)
    return post if backproject is None else post.with_backproject(backproject)

