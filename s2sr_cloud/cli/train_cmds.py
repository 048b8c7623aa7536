"""``s2sr train`` and ``s2sr evaluate``: Wald-protocol training and metrics.

torch and the training code are imported inside the commands (``s2sr --help`` stays fast).
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..options import MAX_CONTEXT
from ._options import BACKPROJECT_DEFAULT, MODELS, O_MODELS, O_POST, net_of

app = typer.Typer()

# option panels of `s2sr train`
T_DATA = "Training data"
T_NET = "Net"
T_OPT = "Optimiser"
T_RUN = "Run"


def _command_line() -> str:
    """The command as typed (``s2sr train ...``). Run in-process (tests, notebooks), argv is the
    host's (pytest's, a kernel's) and says nothing of this command: only its name is recorded."""
    if Path(sys.argv[0]).name in ("s2sr", "__main__.py"):
        return shlex.join(["s2sr", *sys.argv[1:]])
    return "s2sr train"


@app.command("train", rich_help_panel=MODELS)
def train_cmd(
    data: Annotated[
        list[Path],
        typer.Option("--data", rich_help_panel=T_DATA, metavar="PATH", help="Scene .npz files, GeoTIFF band folders, STAC item .json files, or folders holding them (repeatable)."),
    ],
    net: Annotated[str, typer.Option("--net", rich_help_panel=T_NET, metavar="NET", help="20 or 60.")] = "20",
    variant: Annotated[str, typer.Option("--variant", rich_help_panel=T_NET, metavar="NAME", help="dsen2 or vdsen2.")] = "dsen2",
    steps: Annotated[int, typer.Option("--steps", rich_help_panel=T_OPT, metavar="N", min=1, help="Total optimiser steps (a resumed run continues to this).")] = 1000,
    from_: Annotated[
        Path | None, typer.Option("--from", rich_help_panel=T_NET, metavar="FILE", help="Start from this checkpoint (fine-tuning) instead of random weights.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", rich_help_panel=T_RUN, metavar="DIR", help="Output folder: state.safetensors (resume) and the final weights.")] = Path(
        "runs/train"
    ),
    exclude: Annotated[list[str] | None, typer.Option("--exclude", rich_help_panel=T_DATA, metavar="GLOB", help="Glob of scene names/paths to leave out (repeatable).")] = None,
    batch: Annotated[int, typer.Option("--batch", rich_help_panel=T_OPT, metavar="N", min=1, help="Patches per step.")] = 8,
    patch: Annotated[int | None, typer.Option("--patch", rich_help_panel=T_DATA, metavar="PX", min=4, help="Patch side on the target grid (default 32 for net 20, 18 for net 60).")] = None,
    lr: Annotated[float, typer.Option("--lr", rich_help_panel=T_OPT, metavar="LR", help="Peak learning rate (warm-up, then cosine decay to 0.1x).")] = 3e-4,
    optimizer: Annotated[str, typer.Option("--optimizer", rich_help_panel=T_OPT, metavar="NAME", help="adam or nadam.")] = "adam",
    seed: Annotated[int, typer.Option("--seed", rich_help_panel=T_OPT, metavar="N", help="Seed of weights init and patch sampling.")] = 0,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", rich_help_panel=T_RUN, metavar="K", min=1, help="Write OUT/state.safetensors every K steps.")] = 100,
    device: Annotated[str, typer.Option("--device", rich_help_panel=T_RUN, metavar="DEVICE", help="auto (GPU when present), cpu or cuda.")] = "auto",
    threads: Annotated[int | None, typer.Option("--threads", rich_help_panel=T_RUN, metavar="N", help="torch CPU threads.")] = None,
    warmup: Annotated[int, typer.Option("--warmup", rich_help_panel=T_OPT, metavar="STEPS", min=0, help="Linear warm-up steps.")] = 20,
    gain_jitter: Annotated[
        float, typer.Option("--gain-jitter", rich_help_panel=T_DATA, metavar="J", min=0.0, help="Radiometric augmentation: per-band random gain exp(U(-j, j)); 0 = off.")
    ] = 0.0,
    context: Annotated[
        int | None,
        typer.Option(
            "--context", rich_help_panel=T_DATA, metavar="PX",
            min=0, max=MAX_CONTEXT,
            help="Input context around each patch (real pixels, mirrored at scene borders) cropped off before the loss; default: the net's receptive radius.",
        ),
    ] = None,
    degrade: Annotated[
        str,
        typer.Option(
            "--degrade", rich_help_panel=T_DATA, metavar="OP",
            help="How each scene is degraded: wald (the reference's operator), bicubic, mtf, gaussian:SIGMA, or random (several operators per scene: Wald, bicubic and Gaussians of widths drawn over 0.2-0.8 LR px).",
        ),
    ] = "wald",
    degrade_copies: Annotated[
        int, typer.Option("--degrade-copies", rich_help_panel=T_DATA, metavar="N", min=1, max=64, help="With --degrade random: operators (degraded copies) per scene.")
    ] = 8,
    phases: Annotated[
        bool,
        typer.Option(
            "--phases/--no-phases", rich_help_panel=T_DATA,
            help="Also train on every phase of the Wald grid (scene shifted by whole 60 m pixels): 4 (20 m net) or 36 (60 m net) different degradations of each scene.",
        ),
    ] = False,
) -> None:
    """Train or fine-tune a DSen2 net (Wald protocol, L1 loss).

    Adam or Nadam, warm-up then cosine decay. Re-running with the same --out resumes from OUT/state.safetensors.
    """
    from ..errors import InputError
    from ..train.loop import TrainConfig, train
    from ._console import err_console, make_progress, success

    if net not in ("20", "60", "net20", "net60"):
        raise InputError(f"--net must be 20 or 60, not {net!r}")
    if variant not in ("dsen2", "vdsen2"):
        raise InputError(f"--variant must be dsen2 or vdsen2, not {variant!r}")
    cfg = TrainConfig(
        net=net.removeprefix("net"),
        variant=variant,
        data=[str(p) for p in data],
        exclude=list(exclude or []),
        steps=steps,
        batch=batch,
        patch=patch or (32 if net.endswith("20") else 18),
        lr=lr,
        optimizer=optimizer,
        seed=seed,
        checkpoint_every=checkpoint_every,
        out=str(out),
        init_from=str(from_) if from_ else None,
        device=device,
        threads=threads,
        warmup=warmup,
        gain_jitter=gain_jitter,
        context=_receptive_radius(variant) if context is None else context,
        phases=phases,
        degrade=degrade,
        degrade_copies=degrade_copies,
        command=_command_line(),
    )
    with make_progress() as progress:
        task = progress.add_task(f"train net{cfg.net}", total=steps)

        def on_step(done: int, total: int, loss: float) -> None:
            progress.update(task, completed=done, total=total, description=f"train net{cfg.net} loss {loss:.4f}")

        res = train(cfg, on_step=on_step, log_every=0 if err_console.is_terminal else 50)
    success(f"trained steps {res.start_step}..{res.steps} in {res.wall_time_s:.0f} s; weights: {res.final}")


def _receptive_radius(variant: str) -> int:
    from ..bands import VARIANTS

    return VARIANTS[variant].receptive_radius


def _net_files(paths: list[Path] | None, kind: str) -> dict[str, str]:
    """Map each --checkpoint/--onnx file to the net its metadata names."""
    from ..errors import InputError

    out: dict[str, str] = {}
    for p in paths or []:
        net = net_of(p, kind)
        if net in out:
            raise InputError(f"two --{kind} files for the {net} net: {out[net]} and {p}")
        out[net] = str(p)
    return out


def _print_table(doc: dict) -> None:  # type: ignore[type-arg]
    from rich.table import Table

    from ._console import out_console

    table = Table(title=f"{doc.get('protocol', 'wald')} protocol on {doc['scene']['name']} (means over bands)")
    for col in ("net", "method", "RMSE (DN)", "SRE (dB)", "SAM (°)", "UIQ", "PSNR (dB)", "real-scale RMSE (DN)"):
        table.add_column(col, justify="right" if "(" in col or col == "UIQ" else "left")
    for net in ("net20", "net60"):
        if net not in doc:
            continue
        for method in ("model", "no_hybrid", "net_only", "bicubic"):
            if method not in doc[net]:
                continue
            m = doc[net][method]
            cons = doc[net].get("consistency", {}).get(method, {}).get("rmse")
            sam_v = "-" if m["sam"] is None else f"{m['sam']:.3f}"
            label = {"model": "s2sr" if "net_only" in doc[net] else "net", "net_only": "net only",
                     "no_hybrid": "net + back-projection"}.get(method, method)
            table.add_row(
                net, label, f"{m['rmse']:.2f}", f"{m['sre']:.2f}", sam_v, f"{m['uiq']:.4f}", f"{m['psnr']:.2f}",
                "-" if cons is None else f"{cons:.2f}",
            )
    out_console.print(table)
    for net, why in doc.get("skipped", {}).items():
        out_console.print(f"[dim]{net} skipped: {why}[/]")


def _print_summary(sets: list[dict]) -> None:  # type: ignore[type-arg]
    from rich.table import Table

    from ._console import out_console

    table = Table(title="Summary: mean RMSE (DN) over the scenes of each --scene, per protocol; ratio to bicubic; [95 % bootstrap CI over scenes]")
    for col in ("scenes", "protocol", "net", "n", "bicubic", "s2sr (default)", "no hybrid (nets + back-projection)", "net only",
                "s2sr / bicubic", "no hybrid / bicubic", "net only / bicubic", "real-scale s2sr"):
        table.add_column(col, justify="left" if col in ("scenes", "protocol", "net") else "right")

    def f(m: dict, key: str) -> str:  # type: ignore[type-arg]
        v, ci = m.get(f"rmse_{key}"), m.get(f"ci_{key}")
        return "-" if v is None else f"{v:.2f}" + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "")

    def r(m: dict, key: str) -> str:  # type: ignore[type-arg]
        v, ci = m.get(f"ratio_{key}"), m.get(f"ci_ratio_{key}")
        return "-" if v is None else f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    for st in sets:
        for net in ("net20", "net60"):
            m = st["summary"].get(net)
            if m is None:
                continue
            cons = m.get("consistency_model")
            table.add_row(
                Path(st["name"]).stem or st["name"], st.get("protocol", "wald"), net, str(m["scenes"]), f(m, "bicubic"), f(m, "model"),
                f(m, "no_hybrid"), f(m, "net_only"), r(m, "model"), r(m, "no_hybrid"), r(m, "net_only"),
                "-" if cons is None else f"{cons:.2f}",
            )
    out_console.print(table)


def _protocols(values: list[str] | None) -> list:  # type: ignore[type-arg]
    """The --protocol values parsed (default: wald), duplicates dropped; an unknown one is an InputError."""
    from ..errors import InputError
    from ..ops import PROTOCOLS, parse_protocol

    out = []
    for v in values or ["wald"]:
        try:
            op = parse_protocol(v)
        except ValueError as err:
            raise InputError(f"--protocol {v!r} is not a degradation protocol; valid: {', '.join(PROTOCOLS)} "
                             "or gaussian:SIGMA (0 < SIGMA <= 3, low-resolution pixels)") from err
        if op not in out:
            out.append(op)
    return out


def _named_sets(roles: list[str], shared: Path | None) -> list[tuple[str, list]]:  # type: ignore[type-arg]
    """``(name, [(scene name, loader)])`` of each ``--set`` role (scenes load lazily)."""
    from ..errors import InputError
    from ..train.sets import SETS, load_set

    repo = Path(__file__).resolve().parents[2]
    shared = shared or repo.parent / "shared" / "data" / "s2"
    tests = repo / "tests" / "data"
    out = []
    for role in roles:
        if role not in SETS or role == "train":
            raise InputError(f"unknown --set {role!r}; choose validation, test or test2")
        needs = [m for m in SETS[role] if m.root == "shared" and not (shared / m.path).exists()]
        if needs:
            raise InputError(
                f"--set {role} needs {', '.join(m.path for m in needs)} in the shared data folder {shared}, which is missing; "
                "pass --shared-data DIR (the folder holding the shared .npz scenes)"
            )
        scenes = load_set(role, shared, tests)
        out.append((f"set:{role}", [(sc.name, lambda sc=sc: sc) for sc in scenes]))
    return out


@app.command("evaluate", rich_help_panel=MODELS)
def evaluate_cmd(
    scene: Annotated[
        list[Path] | None,
        typer.Option(
            "--scene", metavar="PATH",
            help="Scene .npz, folder of band GeoTIFFs or STAC item .json (held out from training); a folder of scenes is a "
            "set, summarised as one (repeatable).",
        ),
    ] = None,
    data_set: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="ROLE", help="A named set of s2sr_cloud/train/sets.py: validation, test or test2 (repeatable; alongside --scene)."),
    ] = None,
    shared_data: Annotated[
        Path | None,
        typer.Option("--shared-data", metavar="DIR", help="The shared data folder --set reads (default: ../shared/data/s2 next to the repository)."),
    ] = None,
    checkpoint: Annotated[list[Path] | None, typer.Option("--checkpoint", rich_help_panel=O_MODELS, metavar="FILE", help="Checkpoint(s) to evaluate (net read from the file).")] = None,
    onnx: Annotated[list[Path] | None, typer.Option("--onnx", rich_help_panel=O_MODELS, metavar="FILE", help="ONNX export(s) with manifest (net read from the manifest).")] = None,
    net: Annotated[str, typer.Option("--net", metavar="NET", help="20, 60 or all.")] = "all",
    device: Annotated[str, typer.Option("--device", rich_help_panel=O_MODELS, metavar="DEVICE", help="Backend for the nets (default: torch for --checkpoint, else auto).")] = "",
    real_scale: Annotated[bool, typer.Option("--real-scale/--no-real-scale", help="Also run the real-scale consistency check.")] = True,
    tile: Annotated[int, typer.Option("--tile", rich_help_panel=O_MODELS, metavar="PX", min=16, help="Tile side for super_resolve.")] = 256,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON document on stdout.")] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", metavar="FILE", help="Only check this existing super-resolved output of the scene (.npz or 8-band COG): real-scale consistency."),
    ] = None,
    backproject: Annotated[
        int | None,
        typer.Option("--backproject", rich_help_panel=O_POST, metavar="N", min=-1, show_default="per net, as the product",
                     help="Back-projection iterations of the consistency post-step for every net; -1: none."),
    ] = BACKPROJECT_DEFAULT,
    hybrid: Annotated[
        bool,
        typer.Option("--hybrid/--no-hybrid", rich_help_panel=O_POST, help="The guided-regression blend before the back-projection (as the product applies it); --no-hybrid: the nets alone."),
    ] = True,
    adapt: Annotated[
        int,
        typer.Option("--adapt", rich_help_panel=O_MODELS, metavar="STEPS", min=0, help="Scene-adaptive refinement: fine-tune each net this many steps on the evaluation input's own Wald pairs first (needs torch)."),
    ] = 0,
    adapt_lr: Annotated[float, typer.Option("--adapt-lr", rich_help_panel=O_MODELS, metavar="LR", help="Learning rate of --adapt.")] = 5e-5,
    protocol: Annotated[
        list[str] | None,
        typer.Option("--protocol", metavar="P", help="How the input is degraded: wald (default), bicubic, mtf or gaussian:SIGMA (repeatable: every scene under every protocol, one summary table)."),
    ] = None,
) -> None:
    """Wald-protocol metrics of the nets and of bicubic on scenes.

    RMSE, SRE, SAM, UIQ and PSNR. Without --checkpoint/--onnx the package's
    default weights are used. "s2sr" rows are what the product outputs (net +
    back-projection), "net only" the raw nets.
    """
    from ..dn import check_scene
    from ..errors import InputError
    from ..evaluation import evaluate_scene, output_consistency, summarize
    from ..infer import load_runners
    from ..post import product as post_product
    from ..scenes import find_scenes, load_scene
    from ._console import make_progress, out_console

    protocols = _protocols(protocol)
    nets = {"all": ("net20", "net60"), "20": ("net20",), "60": ("net60",)}.get(net.removeprefix("net"))
    if nets is None:
        raise InputError(f"--net must be 20, 60 or all, not {net!r}")
    scene = scene or []
    named = _named_sets(data_set or [], shared_data)
    if not scene and not named:
        raise InputError("give --scene PATH or --set validation|test|test2")
    for sc_path in scene:
        if not sc_path.exists():
            raise InputError(f"scene {sc_path} does not exist")
    if output is not None:
        if len(scene) != 1:
            raise InputError("--output checks one output against one --scene")
        if not output.exists():
            raise InputError(f"output {output} does not exist")
        cons = output_consistency(check_scene(load_scene(scene[0]), scene[0].name), output)
        if as_json:
            typer.echo(json.dumps({"scene": str(scene[0]), "output": str(output), "consistency": cons}, indent=2))
        else:
            for name, c in cons.items():
                out_console.print(f"{name}: real-scale consistency RMSE {c['rmse']:.2f} DN  {c['per_band']}")
        return
    ckpts, onnxs = _net_files(checkpoint, "checkpoint"), _net_files(onnx, "onnx")
    dev = device or ("torch" if ckpts and not onnxs else "auto")
    runners = load_runners(nets, onnx=onnxs, checkpoint=ckpts, device=dev)
    adapter = None
    if adapt:
        from ..train.adapt import AdaptConfig
        from ..train.adapt import adapter as make_adapter

        adapter = make_adapter(AdaptConfig(steps=adapt, lr=adapt_lr), {k: str(v) for k, v in ckpts.items()})
    post = post_product(backproject, hybrid)
    sources = [(str(p), [(q.name, lambda q=q: load_scene(q)) for q in find_scenes([p])]) for p in scene] + named
    sets = [(n, op, items) for op in protocols for n, items in sources]
    docs: list[list[dict]] = []  # type: ignore[type-arg]
    with make_progress(transient=True) as progress:
        task = progress.add_task("evaluate", total=None)
        for _name, op, items in sets:
            group = []
            for pname, load in items:
                progress.update(task, description=f"evaluate {pname} ({op.name})")
                group.append(
                    evaluate_scene(
                        check_scene(load(), pname), runners, real=real_scale, tile=tile, post=post, adapt=adapter,
                        protocol=op, on_tile=lambda d, t: progress.update(task, completed=d, total=t),
                    )
                )
            docs.append(group)
    single = len(sets) == 1 and len(docs[0]) == 1
    summaries = [{"name": n, "protocol": op.name, "summary": summarize(g)} for (n, op, _), g in zip(sets, docs, strict=True)]
    if as_json:
        if single:
            typer.echo(json.dumps(docs[0][0], indent=2))
        else:
            typer.echo(json.dumps({"sets": [{**sm, "scenes": g} for sm, g in zip(summaries, docs, strict=True)]}, indent=2))
        return
    for group in docs:
        for doc in group:
            if single or len(group) == 1:
                _print_table(doc)
    if not single:
        _print_summary(summaries)
