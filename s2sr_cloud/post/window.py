"""The post-steps over a window of a scene, seamless across windows.

:func:`super_resolve_consistent` is :func:`~s2sr_cloud.sr.super_resolve` followed by the
post-steps (:class:`~s2sr_cloud.post.steps.PostSteps`): the window is super-resolved with the
post-steps' margin (clamped at the true image border, where the whole-image computation mirrors
and clamps the same way), post-stepped, and cropped, so block-wise output equals whole-image output.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..bands import net_spec
from ..grid import Window
from ..ops.xp import asarray_like
from ..sr import Runner, SceneSource, count_tiles, super_resolve
from ..timing import stage
from .estimate import resolve
from .qa import ConsistencyQA
from .steps import DEFAULT, PostSteps


def expand(window: Window, margin: int, shape10: tuple[int, int]) -> Window:
    """``window`` grown by ``margin`` 10 m pixels on every side, clamped to the scene."""
    r0, c0 = max(0, window.row - margin), max(0, window.col - margin)
    r1 = min(shape10[0], window.row + window.height + margin)
    c1 = min(shape10[1], window.col + window.width + margin)
    return Window(r0, c0, r1 - r0, c1 - c0)


def read_lr(source: SceneSource, factor: int, win: Window) -> np.ndarray:
    """The 20 m (factor 2) or 60 m (factor 6) bands under a 10 m window on their grid."""
    s = factor
    return source.read({2: 20, 6: 60}[s], (win.row // s, (win.row + win.height) // s), (win.col // s, (win.col + win.width) // s))


def super_resolve_consistent(
    source: SceneSource,
    runners: Mapping[str, Runner],
    *,
    window: Window | None = None,
    post: PostSteps = DEFAULT,
    qa: ConsistencyQA | None = None,
    **kwargs: Any,
) -> dict[str, np.ndarray]:
    """:func:`~s2sr_cloud.sr.super_resolve` of ``window`` followed by ``post``, seamless across windows.

    The post-steps and the QA run where the nets ran: on the host for CPU runners, on the GPU
    (the same array-API code on the runner's torch/CuPy arrays) for runners whose window path
    runs there; the result is then on that device too (the sinks bring it back as uint16).
    ``qa`` accumulates the real-scale consistency of the returned window. ``kwargs`` go to
    :func:`~s2sr_cloud.sr.super_resolve` (``tile``, ``batch``, ``halo``, ``on_tile``). An ``auto``
    operator not estimated yet is estimated on this window (block-wise callers resolve ``post`` once
    for the whole scene first, as :func:`~s2sr_cloud.stream.run_blocks` does).
    """
    post = resolve(post, source, window, runners)  # a no-op when resolved already
    if not post.active:
        out = super_resolve(source, runners, window=window, device=True, **kwargs)
        if qa is not None:
            add_qa(qa, source, out, window or Window(0, 0, *source.shape10))
        return out
    shape10 = source.shape10
    win = window or Window(0, 0, *shape10)
    if any(v % 6 for v in (win.row, win.col, win.height, win.width)):
        raise ValueError(f"window {win} is not on the 60 m grid (multiples of 6 px); cannot back-project")
    ext = expand(win, post.margin10(runners), shape10)
    out = super_resolve(source, runners, window=ext, device=True, **kwargs)
    r, c = win.row - ext.row, win.col - ext.col
    blends = {n for n in out if post.blends(n)}
    b10 = source.read(10, (ext.row, ext.row + ext.height), (ext.col, ext.col + ext.width)) if blends else None
    factors = {net_spec(n).factor for n in out}
    if any(net_spec(n).factor == 6 for n in blends):
        factors.add(2)  # the 60 m net's guides include the 20 m bands
    with stage("read"):
        lows = {s: read_lr(source, s, ext) for s in factors}  # each group read once, shared by the nets
    for name, sr in out.items():
        s = net_spec(name).factor
        if isinstance(sr, np.ndarray):
            done = post.finish(name, sr, lows[s], b10=b10, b20=lows.get(2))
            out[name] = np.ascontiguousarray(done[:, r : r + win.height, c : c + win.width])
        else:  # on the runner's device: the inputs of the post-steps go there once
            on = {k: None if v is None else asarray_like(v, sr) for k, v in (("lr", lows[s]), ("b10", b10), ("b20", lows.get(2)))}
            done = post.finish(name, sr, on["lr"], b10=on["b10"], b20=on["b20"])
            out[name] = done[:, r : r + win.height, c : c + win.width]
    if qa is not None:
        add_qa(qa, source, out, win)
    return out


def add_qa(qa: ConsistencyQA, source: SceneSource, out: Mapping[str, Any], win: Window) -> None:
    """Measure the consistency of a finished window into ``qa``."""
    for name, sr in out.items():
        s = net_spec(name).factor
        if any(v % s for v in (win.row, win.col, win.height, win.width)):
            continue  # not on this net's LR grid: no block-exact comparison
        lr = read_lr(source, s, win)
        if not isinstance(sr, np.ndarray):
            lr = asarray_like(lr, sr)
        with stage("qa"):
            qa.add(name, sr, lr, s)


def tiles_with_margin(blocks: Iterable[Window], shape10: tuple[int, int], nets: Iterable[str], tile: int,
                      post: PostSteps) -> int:
    """Tiles run for ``blocks`` when each is super-resolved with the post-steps' margin."""
    nets = list(nets)
    margin = post.margin10(nets)
    return sum(count_tiles(expand(b, margin, shape10), tile) for b in blocks) * len(nets)
