"""Validation only: would a hybrid blend weight that follows the estimated blur beat a fixed weight?

For each validation scene and protocol (as ``scripts/post_sweep.py``), the shipped net runs once, the
``auto`` operator is estimated from the input alone, and the default back-projection is applied after
each blend weight. A rule "weight ``wn`` where the estimate is narrow (a Gaussian width <= ``t``, or
``bicubic``), ``ww`` where it is wide" is then scored with post_sweep's criterion (mean over protocols
of the per-scene RMSE relative to bicubic) and dominance rule (not worse than the raw net or the net
with back-projection under any protocol). The model card's "A blend weight chosen from the estimated
blur" section quotes its output. The test sets are never read.

    python scripts/weight_rule_sweep.py --net 20 --backproject 2
    python scripts/weight_rule_sweep.py --net 60 --backproject 1
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from post_sweep import PROTOCOLS, raw_outputs  # noqa: E402

from s2sr_cloud.bands import net_spec  # noqa: E402
from s2sr_cloud.infer import load_runner  # noqa: E402
from s2sr_cloud.metrics import all_metrics  # noqa: E402
from s2sr_cloud.post import PostSteps  # noqa: E402
from s2sr_cloud.post.guided import DEFAULTS, GuidedConfig  # noqa: E402
from s2sr_cloud.train.sets import load_set  # noqa: E402

WEIGHTS = (0.0, 0.2, 0.4, 0.6, 0.8)
THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55)


def width(op: str) -> float:
    """An estimated operator's Gaussian width (``bicubic`` counts as narrow)."""
    return 0.0 if op == "bicubic" else float(op.split(":", 1)[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="20")
    ap.add_argument("--backproject", type=int, default=2)
    ap.add_argument("--shared-data", type=Path, default=ROOT.parent / "shared" / "data" / "s2")
    a = ap.parse_args()
    net = net_spec(a.net).name
    bands = list(net_spec(net).outputs)
    base = DEFAULTS[net]
    scenes = load_set("validation", a.shared_data, ROOT / "tests" / "data")
    recs = []
    with load_runner(net, device="cpu") as runner:
        for proto, _name, raw, lr, b10, b20, target, bic, op in raw_outputs(scenes, net, runner, PROTOCOLS):
            r = {"proto": proto, "op": op, "bic": all_metrics(target, bic, bands)["rmse"],
                 "raw": all_metrics(target, raw, bands)["rmse"]}
            for w in WEIGHTS:
                post = PostSteps(a.backproject, w > 0, ((net, GuidedConfig(base.radius, base.ridge, w)),), "auto",
                                 resolved=((net, op),))
                r[w] = all_metrics(target, post.finish(net, raw, lr, b10=b10, b20=b20), bands)["rmse"]
            recs.append(r)

    def score(pick) -> tuple[float, dict[str, float]]:
        per = {p: float(np.mean([pick(r) / r["bic"] for r in recs if r["proto"] == p and r["bic"] >= 1.0]))
               for p in PROTOCOLS}
        return float(np.mean(list(per.values()))), per

    raw_per, bp_per = score(lambda r: r["raw"])[1], score(lambda r: r[0.0])[1]

    def line(label: str, m: float, per: dict[str, float]) -> str:
        dom = all(per[p] <= min(raw_per[p], bp_per[p]) + 1e-12 for p in PROTOCOLS)
        return (f"{label:<34} mean_ratio={m:.4f} " + " ".join(f"{p}={v:.4f}" for p, v in per.items())
                + (" dominating" if dom else ""))

    for w in WEIGHTS:
        print(line(f"fixed net={net} w={w:g}", *score(lambda r, w=w: r[w])))
    rules = []
    for t, wn, ww in itertools.product(THRESHOLDS, WEIGHTS, WEIGHTS):
        if wn != ww:
            m, per = score(lambda r, t=t, wn=wn, ww=ww: r[wn if width(r["op"]) <= t else ww])
            rules.append((m, line(f"rule net={net} t={t:g} wn={wn:g} ww={ww:g}", m, per)))
    for _m, text in sorted(rules)[:10]:
        print(text)


if __name__ == "__main__":
    main()
