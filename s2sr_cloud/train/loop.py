"""The training loop: L1 loss, Adam/Nadam, periodic checkpoints, resume after interruption.

Layout of an output folder ``OUT``:

* ``OUT/state.safetensors`` — written atomically every ``checkpoint_every`` steps: the
  model, the optimiser state (``_extra.opt.*`` tensors) and, in the provenance, the step
  and the sampler's random state. A run started again with the same ``OUT`` resumes from
  it, so an interrupted run loses at most ``checkpoint_every`` steps and (same seed, same
  data, same device) continues exactly as the uninterrupted run would have.
* ``OUT/<net>_<variant>.safetensors`` — the final weights (no optimiser state), written
  when the last step is done; this is the file to ship or to pass to ``--checkpoint``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..bands import net_spec
from ..errors import InputError
from ..nets import build_net, load_checkpoint, save_checkpoint
from ..scenes import find_scenes, sha256_of
from .data import PatchSampler, degradations, load_pairs

log = logging.getLogger(__name__)

STATE_NAME = "state.safetensors"

#: ``on_step(step, total, loss)`` after each optimiser step.
StepFn = Callable[[int, int, float], None]


@dataclass
class TrainConfig:
    """Everything that defines a training run (recorded in the checkpoint's provenance)."""

    net: str
    variant: str = "dsen2"
    data: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    steps: int = 1000
    batch: int = 8
    patch: int = 32
    lr: float = 3e-4
    lr_min_ratio: float = 0.1
    warmup: int = 20
    optimizer: str = "adam"
    gain_jitter: float = 0.0
    context: int = 0
    """Input pixels around each patch (real or mirrored) cropped off the output before the loss."""
    phases: bool = False
    """Also train on every phase of the Wald grid (:func:`~s2sr_cloud.train.data.phase_shifts`)."""
    degrade: str = "wald"
    """How each scene is degraded: one protocol (``wald``, ``bicubic``, ``mtf``, ``gaussian:SIGMA``)
    or ``random`` (``degrade_copies`` operators, :func:`~s2sr_cloud.train.data.random_degradations`)."""
    degrade_copies: int = 8
    seed: int = 0
    checkpoint_every: int = 100
    out: str = "runs/train"
    init_from: str | None = None
    device: str = "auto"
    threads: int | None = None
    command: str = ""


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    final: Path
    state: Path
    start_step: int
    steps: int
    last_loss: float
    wall_time_s: float


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (or platform)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def pick_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay from ``lr`` to ``lr * lr_min_ratio``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def _make_optimizer(cfg: TrainConfig, params: Any) -> torch.optim.Optimizer:
    name = cfg.optimizer.lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    if name == "nadam":
        return torch.optim.NAdam(params, lr=cfg.lr)
    raise InputError(f"unknown optimizer {cfg.optimizer!r}; expected adam or nadam")


def _opt_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for idx, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"opt.{idx}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return out


def _load_opt(opt: torch.optim.Optimizer, extra: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in extra.items():
        if not key.startswith("opt."):
            continue
        _, idx, k = key.split(".", 2)
        state.setdefault(int(idx), {})[k] = v
    sd = opt.state_dict()
    opt.load_state_dict({"state": state, "param_groups": sd["param_groups"]})


def _data_provenance(paths: list[Path]) -> list[dict[str, str]]:
    return [{"path": str(p), "sha256": sha256_of([p] if p.is_file() else sorted(q for q in p.iterdir() if q.is_file()))} for p in paths]


def _provenance(cfg: TrainConfig, files: list[dict[str, str]], device: str, step: int, wall: float, extra: dict[str, Any]) -> dict[str, Any]:
    hw = torch.cuda.get_device_name(0) if device.startswith("cuda") else cpu_model()
    return {
        "trained_by": "s2sr-cloud (own weights, not the original DSen2 weights)",
        "command": cfg.command,
        "config": asdict(cfg),
        "data": files,
        "steps_done": step,
        "wall_time_s": round(wall, 1),
        "device": device,
        "hardware": hw,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "loss": "L1 on DN/2000",
        **extra,
    }


def _init_model(cfg: TrainConfig) -> tuple[torch.nn.Module, str | None]:
    """A fresh net (last conv at zero: starts as the bilinear baseline) or ``cfg.init_from``."""
    torch.manual_seed(cfg.seed)
    model = build_net(cfg.net, cfg.variant)
    if cfg.init_from:
        ck = load_checkpoint(cfg.init_from, net=cfg.net, variant=cfg.variant)
        model.load_state_dict(ck.model.state_dict())
        return model, ck.sha256
    torch.nn.init.zeros_(model.tail.weight)
    return model, None


def _resume(cfg: TrainConfig, path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, rng: np.random.Generator) -> tuple[int, float, str | None]:
    """Load model, optimiser and sampler state from ``path``: (step, wall time, init sha256)."""
    ck = load_checkpoint(path, net=cfg.net, variant=cfg.variant, with_extra=True)
    model.load_state_dict(ck.model.state_dict())
    _load_opt(opt, ck.meta["extra"])
    prov = ck.meta["provenance"]
    rng.bit_generator.state = prov["resume"]["rng"]
    log.info("resuming from %s at step %d", path, prov["resume"]["step"])
    return int(prov["resume"]["step"]), float(prov.get("wall_time_s", 0.0)), prov.get("init_from_sha256")


def _step(
    model: torch.nn.Module, opt: torch.optim.Optimizer, batch: tuple[np.ndarray, np.ndarray], lr: float, device: str, context: int = 0
) -> float:
    """One optimiser step on a batch (output cropped by ``context`` px); returns the L1 loss."""
    for g in opt.param_groups:
        g["lr"] = lr
    x = torch.from_numpy(batch[0]).to(device)
    y = torch.from_numpy(batch[1]).to(device)
    out = model(x)
    if context:
        out = out[..., context:-context, context:-context]
    loss = torch.nn.functional.l1_loss(out, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def train(cfg: TrainConfig, on_step: StepFn | None = None, log_every: int = 50) -> TrainResult:
    """Train (or fine-tune, with ``cfg.init_from``) one net; resume from ``OUT/state`` if present."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    state_path = Path(cfg.out) / STATE_NAME
    final_path = Path(cfg.out) / f"{net_spec(cfg.net).name}_{cfg.variant}.safetensors"
    rng = np.random.default_rng(cfg.seed)
    model, init_sha = _init_model(cfg)
    model.to(device)
    opt = _make_optimizer(cfg, model.parameters())
    start, wall0 = 0, 0.0
    if state_path.exists():
        start, wall0, init_sha = _resume(cfg, state_path, model, opt, rng)
    paths = find_scenes(cfg.data, cfg.exclude)
    files = _data_provenance(paths)
    ops = degradations(cfg.degrade, cfg.degrade_copies, cfg.seed)
    log.info("degradations: %s", ", ".join(op.name for op in ops))
    sampler = PatchSampler(
        load_pairs(paths, cfg.net, cfg.phases, ops), cfg.patch, rng, cfg.gain_jitter, cfg.context
    )
    log.info("training %s/%s on %d scenes (%s), steps %d..%d", cfg.net, cfg.variant, len(sampler.pairs), device, start, cfg.steps)
    t0 = time.monotonic()
    loss_v = float("nan")

    def save(step: int, path: Path, with_state: bool) -> None:
        ex: dict[str, Any] = {"init_from": cfg.init_from, "init_from_sha256": init_sha, "last_loss": loss_v,
                              "degradations": [op.name for op in ops]}
        if with_state:
            ex["resume"] = {"step": step, "rng": rng.bit_generator.state}
        prov = _provenance(cfg, files, device, step, wall0 + time.monotonic() - t0, ex)
        save_checkpoint(model, path, prov, _opt_tensors(opt) if with_state else None)

    model.train()
    for step in range(start, cfg.steps):
        loss_v = _step(model, opt, sampler.batch(cfg.batch), lr_at(cfg, step), device, cfg.context)
        if not math.isfinite(loss_v):
            raise InputError(f"training diverged at step {step + 1} (loss {loss_v}); lower --lr")
        done = step + 1
        if on_step is not None:
            on_step(done, cfg.steps, loss_v)
        if log_every and done % log_every == 0:
            log.info("step %d/%d loss %.5f lr %.2e (%.2f s/step)", done, cfg.steps, loss_v, lr_at(cfg, step), (time.monotonic() - t0) / max(1, done - start))
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            save(done, state_path, with_state=True)
    model.eval()
    save(cfg.steps, final_path, with_state=False)
    return TrainResult(final_path, state_path, start, cfg.steps, loss_v, wall0 + time.monotonic() - t0)
