"""Validation only: the upside of a blur-aware 20 m net, measured by switching nets per scene.

Each validation scene and protocol (as ``scripts/post_sweep.py``) runs through the shipped 20 m net
and through ``--other`` (e.g. a ``s2sr train --degrade random`` checkpoint), both with the default
post-steps and the scene's ``auto`` estimate. The rule "``--other`` where the estimated Gaussian width
exceeds t" is scored with post_sweep's criterion (mean over protocols of the per-scene RMSE relative
to bicubic); ``t none`` is the shipped net alone. The model card's randomised-degradation paragraph
quotes its output. The test sets are never read.

    python scripts/net_switch_sweep.py --other runs/rd20/net20_dsen2.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from post_sweep import PROTOCOLS, raw_outputs  # noqa: E402
from weight_rule_sweep import width  # noqa: E402

from s2sr_cloud.bands import net_spec  # noqa: E402
from s2sr_cloud.infer import load_runner  # noqa: E402
from s2sr_cloud.metrics import all_metrics  # noqa: E402
from s2sr_cloud.post import PostSteps  # noqa: E402
from s2sr_cloud.post.guided import DEFAULTS, GuidedConfig  # noqa: E402
from s2sr_cloud.train.sets import load_set  # noqa: E402

THRESHOLDS = (0.4, 0.45, 0.5, 0.55)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", type=Path, required=True, help="the second 20 m checkpoint")
    ap.add_argument("--weight", type=float, default=0.6, help="the blend weight (default: the shipped 0.6)")
    ap.add_argument("--backproject", type=int, default=2)
    ap.add_argument("--shared-data", type=Path, default=ROOT.parent / "shared" / "data" / "s2")
    a = ap.parse_args()
    net, base = "net20", DEFAULTS["net20"]
    bands = list(net_spec(net).outputs)
    scenes = load_set("validation", a.shared_data, ROOT / "tests" / "data")
    found: dict[tuple[str, str, str], tuple[str, float, float]] = {}
    for tag, runner in (("shipped", load_runner(net, device="cpu")),
                        ("other", load_runner(net, checkpoint=a.other, device="torch"))):
        with runner:
            for proto, name, raw, lr, b10, b20, target, bic, op in raw_outputs(scenes, net, runner, PROTOCOLS):
                post = PostSteps(a.backproject, a.weight > 0, ((net, GuidedConfig(base.radius, base.ridge, a.weight)),),
                                 "auto", resolved=((net, op),))
                out = post.finish(net, raw, lr, b10=b10, b20=b20)
                found[(tag, proto, name)] = (op, all_metrics(target, bic, bands)["rmse"], all_metrics(target, out, bands)["rmse"])
    for t in (None, *THRESHOLDS):
        per = {}
        for p in PROTOCOLS:
            ratios = []
            for (tag, proto, name), (op, bic, _err) in found.items():
                if tag == "shipped" and proto == p and bic >= 1.0:
                    use = "other" if t is not None and width(op) > t else "shipped"
                    ratios.append(found[(use, p, name)][2] / bic)
            per[p] = float(np.mean(ratios))
        print(f"switch       t={t if t is not None else 'none'} mean_ratio={np.mean(list(per.values())):.4f} "
              + " ".join(f"{p}={v:.4f}" for p, v in per.items()))


if __name__ == "__main__":
    main()
