"""Scale-out on Dask distributed: throughput with 1 vs 2 local workers, and the cost per unit.

Prints one line per figure (all measured in this one run, side by side):
  in-process   the same items through `process_items` without Dask (the baseline)
  workers=N    items/min and 10 m output Mpx/s with a LocalCluster of N worker processes
               (cluster start-up excluded, reported separately), and how busy the workers were:
               sum of unit compute time / (wall x N)
  split        one item cut into row bands (--split-block rows per band) over N workers: the
               whole item's wall time (parts + assembly into one COG)
  overhead     scheduler round trip of a trivial unit (submit -> result, median of 30), and the
               per-unit cost of 300 trivial units submitted at once

Items are copies (distinct ids) of the bundled sample's Virginia item; the default area is the
`make demo` bbox (186 x 228 px at 10 m), processed with the package's default DSen2 weights on
the ONNX Runtime CPU provider. Usage:
  python bench/scale_out.py [--items 4] [--workers 1,2] [--bbox W,S,E,N] [--split-block 180]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import pystac

from s2sr_cloud.batch import ModelSpec, process_items
from s2sr_cloud.catalog.presets import resolve_catalog
from s2sr_cloud.catalog.search import load_item, parse_bbox
from s2sr_cloud.pipeline import RunParams

ITEM = Path(__file__).parents[1] / "s2sr_cloud/sample/sentinel-2-l1c/S2A_18SVG_20160112_0_L1C/S2A_18SVG_20160112_0_L1C.json"


def _noop(x: int) -> int:
    return x


def _copies(n: int) -> list[pystac.Item]:
    base = load_item(str(ITEM))
    out = []
    for k in range(n):
        it = base.clone()
        it.id = f"{base.id}-copy{k}"
        out.append(it)
    return out


def _report(label: str, outcomes: list, wall: float, workers: int) -> None:
    done = [o for o in outcomes if o.status == "done"]
    if len(done) != len(outcomes):
        raise SystemExit(f"{label}: {[(o.item_id, o.status, o.error) for o in outcomes]}")
    px = sum(o.pixels for o in done)
    busy = sum(o.seconds for o in done) / (wall * workers)
    print(f"{label:<12} {len(done) / wall * 60:7.2f} items/min  {px / 1e6 / wall:.4f} Mpx/s (10 m)  "
          f"{wall:6.1f} s for {len(done)} items of {px // len(done)} px; workers busy {busy:.0%}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=4)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--bbox", default="-75.71,37.725,-75.69,37.745")
    ap.add_argument("--split-block", type=int, default=180, help="rows per band of the split case (0: skip it)")
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    prof = resolve_catalog("sample")
    spec = ModelSpec(device="cpu")
    items = _copies(args.items)
    load = os.getloadavg()
    print(f"machine      {platform.machine()}, {os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} "
          f"{load[2]:.1f} at start; {len(items)} items, bbox {args.bbox}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        params = RunParams(out_dir=Path(tmp) / "here", bbox=parse_bbox(args.bbox), overwrite=True)
        runners = spec.load()
        process_items(items[:1], prof, params, models=runners)  # warm caches
        t = time.perf_counter()
        outs = process_items(items, prof, params, models=runners)
        _report("in-process", outs, time.perf_counter() - t, 1)
        for n in (int(x) for x in args.workers.split(",")):
            t = time.perf_counter()
            with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                    Client(cluster) as client:
                start = time.perf_counter() - t
                p = RunParams(out_dir=Path(tmp) / f"w{n}", bbox=parse_bbox(args.bbox), overwrite=True)
                client.run(lambda: __import__("s2sr_cloud.batch"))
                process_items(items[:n], prof, p, models=spec, client=client)  # each worker loads its runners once
                t = time.perf_counter()
                outs = process_items(items, prof, p, models=spec, client=client)
                _report(f"workers={n}", outs, time.perf_counter() - t, n)
                print(f"{'':<12} cluster start {start:.1f} s", flush=True)
                if args.split_block:
                    whole = RunParams(out_dir=Path(tmp) / f"s{n}", block=args.split_block, overwrite=True)
                    t = time.perf_counter()
                    (o,) = process_items(items[:1], prof, whole, models=spec, client=client, unit_rows=args.split_block)
                    wall = time.perf_counter() - t
                    print(f"split        {n} worker(s): one {o.result.grid.shape[1]}x{o.result.grid.shape[0]} px item in "
                          f"{o.units} bands: {wall:.1f} s wall, {o.pixels / 1e6 / wall:.4f} Mpx/s", flush=True)
                if n == max(int(x) for x in args.workers.split(",")):
                    rt = []
                    for i in range(30):
                        t = time.perf_counter()
                        client.submit(_noop, i, pure=False).result()
                        rt.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    client.gather(client.map(_noop, range(300), pure=False))
                    many = time.perf_counter() - t
                    print(f"overhead     {statistics.median(rt) * 1e3:.1f} ms round trip per trivial unit (median of 30); "
                          f"{many / 300 * 1e3:.2f} ms per unit for 300 at once on {n} workers", flush=True)
    load = os.getloadavg()
    print(f"machine      load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at end", flush=True)


if __name__ == "__main__":
    main()
