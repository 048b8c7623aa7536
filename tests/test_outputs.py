"""The output lock and staging sweep (io/lock), part files and their sidecars (io/parts), records and
the done-before rule (publish/record), the stop request (stop)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from s2sr_cloud import stop
from s2sr_cloud.errors import InputError, OutputLocked
from s2sr_cloud.io.lock import lock_path, output_lock, sweep_staging
from s2sr_cloud.io.parts import (
    PartWriter,
    finished_part,
    part_path,
    sidecar_path,
    sweep_parts,
    write_sidecar,
)
from s2sr_cloud.post import PostSteps
from s2sr_cloud.publish.record import (
    done_before,
    read_record,
    record_path,
    same_model,
)
from s2sr_cloud.sr import Window


def test_a_second_holder_is_refused_or_waits(tmp_path: Path) -> None:
    out = tmp_path / "x-s2sr.tif"
    with output_lock(out):
        assert lock_path(out).is_file() and lock_path(out).read_text().split()[0] == str(os.getpid())
        with pytest.raises(OutputLocked, match=f"pid {os.getpid()}"), output_lock(out):
            pass  # another open file description: flock refuses it, even in one process
    assert not lock_path(out).exists()  # the lock goes with its holder
    order: list[str] = []
    held = threading.Event()

    def first() -> None:
        with output_lock(out):
            held.set()
            time.sleep(0.5)
            order.append("first")

    t = threading.Thread(target=first)
    t.start()
    held.wait()
    with output_lock(out, wait=True):
        order.append("second")
    t.join()
    assert order == ["first", "second"]


def test_a_killed_holder_frees_the_lock_and_its_staging_files_are_swept(tmp_path: Path) -> None:
    out = tmp_path / "x-s2sr.tif"
    code = ("import sys, time; from pathlib import Path; from s2sr_cloud.io.lock import output_lock\n"
            f"p = Path({str(out)!r})\n"
            "with output_lock(p):\n"
            "    (p.parent / ('.' + p.name + '.abcd.stage.tif')).write_bytes(b'half')\n"
            "    print('held', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    with pytest.raises(OutputLocked), output_lock(out):
        pass
    proc.kill()
    proc.wait()
    (tmp_path / "unrelated.tif").write_bytes(b"keep")
    with output_lock(out):  # the kernel released the dead holder's lock
        gone = sweep_staging(out)
    assert [p.name for p in gone] == [f".{out.name}.abcd.stage.tif"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unrelated.tif"]


def test_a_stop_request_ends_a_wait_for_a_lock(tmp_path: Path) -> None:
    out = tmp_path / "x.tif"
    with output_lock(out):
        threading.Timer(0.3, stop.request).start()
        try:
            with pytest.raises(stop.Stopped), output_lock(out, wait=True):
                pass
        finally:
            stop.reset()


def test_cancelling_calls_the_works_cancel_and_raises_stopped() -> None:
    class Work:
        cancelled = False

        def cancel(self) -> None:
            self.cancelled = True

    w = Work()
    def terminated_run() -> None:
        with stop.cancelling(w):
            stop.request("terminated")
            raise RuntimeError("the run was terminated")  # as ONNX Runtime answers a terminate

    try:
        with pytest.raises(stop.Stopped):
            terminated_run()
        assert w.cancelled and stop.TOKEN.reason == "terminated"
    finally:
        stop.reset()
    with stop.cancelling(w):  # no request: nothing happens
        pass


def test_parts_resume_only_when_made_the_same_way(tmp_path: Path) -> None:
    part = part_path(tmp_path / "stage", (0, 12))
    with PartWriter(part, width=6, rows=(0, 12), count=2, crs="EPSG:32633", transform=(10.0, 0.0, 500000.0, 0.0, -10.0,
                                                                                        5000000.0)) as w:
        w.write(np.ones((2, 12, 6), np.uint16), Window(0, 0, 12, 6))
    made = {"item": "x", "rows": [0, 12], "models": {"net20": {"onnx_sha256": "a"}}}
    assert finished_part(part, made, same_model) is None  # no sidecar: not finished
    qa = {"sq": {"B05": 0.1 + 0.2}, "n": {"B05": 7}}
    write_sidecar(part, made, qa)
    assert finished_part(part, made, same_model) == qa  # the sums come back exactly (JSON floats)
    assert finished_part(part, {**made, "rows": [0, 6]}, same_model) is None
    assert finished_part(part, {**made, "models": {"net20": {"onnx_sha256": "b"}}}, same_model) is None
    sidecar_path(part).write_text("{trunc")
    assert finished_part(part, made, same_model) is None
    (part.parent / f".{part.name}.zz.tif").write_bytes(b"half")  # a killed writer's staging file
    sweep_parts(part.parent)
    assert sorted(p.name for p in part.parent.iterdir()) == sorted([part.name, sidecar_path(part).name])


def test_records_are_checked(tmp_path: Path) -> None:
    cog = tmp_path / "x-s2sr.tif"
    cog.write_bytes(b"x")
    rec = record_path(cog)
    good = {"s2sr_record": 1, "cog": cog.name, "source_item": {"id": "x"}, "models": {"net20": {"name": "a"}},
            "backend": "onnxruntime-cpu", "version": "0", "backproject": 2, "hybrid": True}
    rec.write_text(json.dumps(good))
    assert read_record(rec)["cog"] == cog.name
    for body, words, usable in ((b'{"cog": "x', "truncated", False), (b"{}", "lacks", False),
                                (b"\xff\xfe\x00", "truncated", False), (b"[]", "not an s2sr record", False),
                                (json.dumps({**good, "models": "m"}).encode(), "'models' must be a dict", False),
                                (json.dumps({**good, "backproject": True}).encode(), "'backproject' must be a int", True),
                                (json.dumps({**good, "cog": "../etc/passwd"}).encode(), "beside the record", True)):
        rec.write_bytes(body)
        with pytest.raises(InputError, match=words):
            read_record(rec)  # what `s2sr publish` reads
        # the done-before rule reads only what it compares: an unusable record is not "done"
        assert done_before("x", cog, good["models"]) is usable
    rec.write_text(json.dumps(good))
    from s2sr_cloud.post.steps import _LEGACY_GUIDED

    assert done_before("x", cog, good["models"], PostSteps(2, True, _LEGACY_GUIDED))  # a record of its time
    assert not done_before("x", cog, good["models"], PostSteps(-1, True))
    assert not done_before("y", cog, good["models"])
    del good["hybrid"]
    rec.write_text(json.dumps(good))  # made before the hybrid step existed: without it
    assert done_before("x", cog, good["models"], PostSteps(2, False))
