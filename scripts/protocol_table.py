"""The model card's per-protocol table from one ``s2sr evaluate --json`` document, and the quality check
of issue 19 on the test sets.

    s2sr evaluate --set validation --set test --set test2 --protocol wald ... --no-real-scale --json > ev.json
    python scripts/protocol_table.py ev.json [--check test,test2]

Prints a Markdown table (set, protocol, net, scenes, bicubic, s2sr default, nets + back-projection, raw
nets, each with its 95 % bootstrap interval over scenes and its ratio to bicubic), then, with ``--check``,
one line per test set, protocol and net: the default's ratio to bicubic against the bound (0.30 under the
Wald protocol, 0.40 under every other) and whether the default is not worse than the raw nets and the
nets with back-projection.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLS = (("model", "s2sr default"), ("no_hybrid", "nets + back-projection"), ("net_only", "raw nets"))


def cell(m: dict, key: str) -> str:
    v, ci, r = m.get(f"rmse_{key}"), m.get(f"ci_{key}"), m.get(f"ratio_{key}")
    if v is None:
        return "–"
    out = f"{v:.2f}"
    if ci:
        out += f" [{ci[0]:.1f}, {ci[1]:.1f}]"
    if r is not None:
        out += f" ({r:.2f}×)"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("doc", type=Path)
    ap.add_argument("--check", default="", help="comma-separated set roles to check against issue 19's bounds (e.g. test,test2)")
    a = ap.parse_args()
    sets = json.loads(a.doc.read_text())["sets"]
    print("| set | protocol | net | scenes | bicubic | " + " | ".join(c for _, c in COLS) + " |")
    print("|---|---|---|---|---|" + "---|" * len(COLS))
    for st in sets:
        for net in ("net20", "net60"):
            m = st["summary"].get(net)
            if not m:
                continue
            bic = m["rmse_bicubic"], m.get("ci_bicubic")
            b = f"{bic[0]:.2f}" + (f" [{bic[1][0]:.1f}, {bic[1][1]:.1f}]" if bic[1] else "")
            name = st["name"].removeprefix("set:")
            print(f"| {name} | {st['protocol']} | {net[3:]} m | {m['scenes']} | {b} | " + " | ".join(cell(m, k) for k, _ in COLS) + " |")
    roles = [r for r in a.check.split(",") if r]
    failed = checked = 0
    for st in sets:
        name = st["name"].removeprefix("set:")
        if name not in roles:
            continue
        for net in ("net20", "net60"):
            m = st["summary"].get(net)
            if not m:
                continue
            bound = 0.30 if st["protocol"] == "wald" else 0.40
            ratio = m["ratio_model"]
            others = [m[f"rmse_{k}"] for k in ("no_hybrid", "net_only") if f"rmse_{k}" in m]
            ok_ratio, ok_steps = ratio <= bound, all(m["rmse_model"] <= o for o in others)
            failed += not (ok_ratio and ok_steps)
            checked += 1
            print(f"check        set={name} protocol={st['protocol']} net={net} ratio={ratio:.3f} bound={bound:.2f} "
                  f"{'ok' if ok_ratio else 'ABOVE'}; default {m['rmse_model']:.2f} vs "
                  + "/".join(f"{o:.2f}" for o in others) + f" {'not worse' if ok_steps else 'WORSE'}")
    if roles:
        verdict = "no such set in the document" if not checked else "all met" if not failed else f"{failed} of {checked} not met"
        print(f"check        {verdict}")


if __name__ == "__main__":
    main()
