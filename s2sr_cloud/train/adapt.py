"""Scene-adaptive refinement: fine-tune a net on the scene it is about to super-resolve.

The Wald protocol needs no ground truth, so the input scene itself gives training pairs:
degraded once more by the net's factor, it teaches the net the mapping one scale down,
which is then applied to the scene at its own scale (the DSen2 assumption). A few
optimiser steps adapt the shipped weights to the scene's landscape, season and product
level.

Honesty rule for measuring it: adaptation only ever sees the scene the product would get
as *input*. In a Wald evaluation that input is the already degraded scene, so the
adaptation pairs are degraded twice and never contain the evaluation target
(:func:`s2sr_cloud.evaluation.wald_metrics` with :func:`adapter` does this).

Needs PyTorch (the ``train`` extra).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..bands import net_spec
from ..errors import InputError
from ..scenes import Scene
from .data import Pair, PatchSampler, make_pair

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AdaptConfig:
    """How to adapt: steps, batch × patch on the target grid, learning rate, seed."""

    steps: int = 100
    batch: int = 4
    patch: int | None = None
    """Target-grid patch side (default: 32 for the 20 m net, 12 for the 60 m net, capped by the scene)."""
    lr: float = 5e-5
    seed: int = 0
    threads: int | None = None
    device: str = "cpu"


def _patch_for(pair_shape: tuple[int, int], net: str, want: int | None) -> int:
    default = 32 if net_spec(net).factor == 2 else 12
    return max(4, min(want or default, *pair_shape))


def adapt_runner(
    scene: Scene,
    net: str,
    checkpoint: str | None = None,
    cfg: AdaptConfig | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
):  # type: ignore[no-untyped-def]
    """A :class:`~s2sr_cloud.nets.model.TorchRunner` of ``net`` fine-tuned on ``scene``'s own
    Wald pairs (``checkpoint``: the starting weights, default the shipped ones)."""
    import torch

    from ..weights import default_checkpoint

    cfg = cfg or AdaptConfig()
    spec = net_spec(net)
    ckpt = checkpoint or default_checkpoint(spec.name)
    if ckpt is None:
        raise InputError(f"no starting weights for the {spec.name} net; pass --checkpoint")
    try:
        pair = make_pair(scene, spec.name)
    except InputError as err:
        raise InputError(f"scene {scene.name} is too small to adapt the {spec.name} net on: {err}") from err
    threads_before = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _adapt(scene, spec.name, str(ckpt), pair, cfg, on_step)  # type: ignore[no-any-return]
    finally:
        torch.set_num_threads(threads_before)


def _adapt(scene: Scene, net: str, ckpt: str, pair: Pair, cfg: AdaptConfig, on_step: Callable[[int, int, float], None] | None):  # type: ignore[no-untyped-def]
    """The fine-tuning loop of :func:`adapt_runner`."""
    import torch

    from ..nets import load_checkpoint
    from ..nets.model import TorchRunner
    from .loop import _step, pick_device

    spec = net_spec(net)
    device = pick_device(cfg.device)
    loaded = load_checkpoint(ckpt, net=spec.name)
    model = loaded.model.to(device)
    halo = model.halo
    patch = _patch_for(pair.y.shape[1:], spec.name, cfg.patch)
    rng = np.random.default_rng(cfg.seed)
    sampler = PatchSampler([pair], patch, rng, 0.0, halo)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model.train()
    t0 = time.monotonic()
    loss = float("nan")
    for k in range(cfg.steps):
        loss = _step(model, opt, sampler.batch(cfg.batch), cfg.lr, device, halo)
        if on_step is not None:
            on_step(k + 1, cfg.steps, loss)
    model.eval()
    log.info("adapted %s on %s: %d steps in %.1f s (last loss %.5f)", spec.name, scene.name, cfg.steps, time.monotonic() - t0, loss)
    runner = TorchRunner(model, device, name=f"{spec.name}_adapted", checkpoint_sha256=loaded.sha256)
    runner.model_info["adapted"] = {"steps": cfg.steps, "lr": cfg.lr, "batch": cfg.batch, "patch": patch, "seed": cfg.seed}
    return runner


def adapter(cfg: AdaptConfig, checkpoints: Mapping[str, str] | None = None) -> Callable[[Scene, str, Any], tuple[Any, dict[str, Any] | None]]:
    """The :data:`s2sr_cloud.evaluation.Adapter` of ``cfg``: each net fine-tuned from
    ``checkpoints[net]`` (default: the shipped weights) on the evaluation input; a scene too
    small to adapt on keeps the runner as is (logged)."""

    def adapt(scene: Scene, net: str, runner: Any) -> tuple[Any, dict[str, Any] | None]:
        if cfg.steps <= 0:
            return runner, None
        t0 = time.monotonic()
        try:
            tuned = adapt_runner(scene, net, (checkpoints or {}).get(net_spec(net).name), cfg)
        except InputError as err:
            log.warning("no adaptation of %s on %s: %s", net, scene.name, err)
            return runner, {"steps": 0, "skipped": str(err)}
        return tuned, {"steps": cfg.steps, "lr": cfg.lr, "seconds": round(time.monotonic() - t0, 1)}

    return adapt
