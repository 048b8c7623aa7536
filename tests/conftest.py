"""Shared pytest configuration: markers, opt-in options, data paths.

Service fixtures live in their own plugin modules (listed in ``pytest_plugins``) so that
each area of the project keeps its fixtures together.
"""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"

# Fixture plugin modules (tests/<name>.py). Add yours here.
pytest_plugins: list[str] = ["tests._fx_core", "tests._fx_dask", "tests._fx_engine", "tests._fx_services",
                             "tests._fx_stac", "tests._fx_stores"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--network", action="store_true", help="run tests that use live public catalogs")
    parser.addoption("--gpu", action="store_true", help="fail (not skip) gpu tests when no GPU is found")


def _gpu_available() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_net = pytest.mark.skip(reason="live network test: run with --network")
    has_gpu = _gpu_available()
    skip_gpu = pytest.mark.skip(reason="no CUDA GPU / TensorRT available")
    for item in items:
        if "network" in item.keywords and not config.getoption("--network"):
            item.add_marker(skip_net)
        if "gpu" in item.keywords and not has_gpu and not config.getoption("--gpu"):
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One fresh per-user cache for the whole run (precision gate, int8 models, exported ONNX):
    the tests never read or write the developer's ``~/.cache/s2sr-cloud``, so what a machine
    measured earlier (e.g. a gate that picks OpenVINO's fp32 kernels) cannot change a test's
    outcome. Subprocesses inherit it through the environment."""
    import os

    saved = {k: os.environ.get(k) for k in ("S2SR_CACHE_DIR", "S2SR_FP32_BACKEND")}
    os.environ["S2SR_CACHE_DIR"] = str(tmp_path_factory.mktemp("s2sr-cache"))
    # fp32 under --device auto on ONNX Runtime unless a test asks otherwise: which kernels are faster
    # is a timing, and tests must not depend on one (tests/test_precision.py covers the choice)
    os.environ["S2SR_FP32_BACKEND"] = "onnxruntime"
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def malmo_npz() -> Path:
    """Real L1C crop of Malmö (600 x 600 px at 10 m), see tests/data/README.md."""
    return DATA / "S2A_MSIL1C_20170527_T33UUB.npz"


@pytest.fixture(scope="session")
def malmo(malmo_npz: Path):  # type: ignore[no-untyped-def]
    """The Malmö crop as a training/evaluation ``Scene`` (b10, b20, b60 arrays)."""
    from s2sr_cloud.scenes import load_npz

    return load_npz(malmo_npz)


@pytest.fixture(scope="session")
def shipped():  # type: ignore[no-untyped-def]
    """Both nets with the default weights on ONNX Runtime CPU."""
    from s2sr_cloud.infer import load_runners

    return load_runners(("net20", "net60"), device="cpu")


@pytest.fixture(scope="session")
def narrow_models():  # type: ignore[no-untyped-def]
    """Both nets as PyTorch modules 8 features wide (random weights, seeded): for tests of the
    PyTorch runners' paths (device windows, fixed tiles, skipped tiles), whose property does not
    depend on the weights."""
    torch = pytest.importorskip("torch")
    from s2sr_cloud.bands import VariantSpec, net_spec
    from s2sr_cloud.nets.model import DSen2

    out = {}
    for i, n in enumerate(("net20", "net60")):
        torch.manual_seed(11 + i)
        out[n] = DSen2(net_spec(n), VariantSpec("dsen2", 6, 8)).eval()
    return out


@pytest.fixture(scope="session")
def narrow_runners(narrow):  # type: ignore[no-untyped-def]
    """Both nets 8 features wide (random weights, real ONNX Runtime): for tests of *where* and
    *how* the nets run (tiling, windows, margins, devices), whose property does not depend on the
    weights — about 30× cheaper than the shipped nets."""
    from s2sr_cloud.infer import load_runners

    return load_runners(("net20", "net60"), onnx=dict(narrow.onnx), device="cpu")
