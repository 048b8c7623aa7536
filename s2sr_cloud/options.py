"""The choices of the options every entry point shares: device, precision, net, variant.

One place for the CLI (which refuses a typo as a usage error listing the choices) and the
library (which validates backend-specific combinations and says what works instead).
Values are plain strings (:class:`enum.StrEnum`), so ``Precision.FP16 == "fp16"``.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Device(StrEnum):
    """Inference backend; ``cuda:N`` picks GPU N (see :func:`parse_device`)."""

    AUTO = "auto"
    TENSORRT = "tensorrt"
    ORT_TRT = "ort-trt"
    CUDA = "cuda"
    CPU = "cpu"
    TORCH = "torch"
    OPENVINO = "openvino"


class Precision(StrEnum):
    """Numeric precision of the inference engine (which backends take which: the library says)."""

    AUTO = "auto"
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"


class Net(StrEnum):
    """A DSen2 net by its input resolution."""

    NET20 = "20"
    NET60 = "60"


class Variant(StrEnum):
    DSEN2 = "dsen2"
    VDSEN2 = "vdsen2"


_CUDA_N = re.compile(r"cuda:\d{1,2}")


def choices(kind: type[StrEnum]) -> str:
    return ", ".join(m.value for m in kind)


def parse_choice(kind: type[StrEnum], value: str, option: str) -> str:
    """``value`` lower-cased if it is one of ``kind``; ValueError listing the choices otherwise."""
    v = str(value).strip().lower()
    if v in {m.value for m in kind}:
        return v
    raise ValueError(f"{value!r} is not a valid {option}; choose one of {choices(kind)}")


def parse_device(value: str) -> str:
    """A :class:`Device` value or ``cuda:N``; ValueError listing the choices otherwise."""
    v = str(value).strip().lower()
    if _CUDA_N.fullmatch(v):
        return v
    try:
        return parse_choice(Device, v, "device")
    except ValueError:
        raise ValueError(f"{value!r} is not a valid device; choose one of {choices(Device)} or cuda:N") from None


def parse_net(value: str) -> str:
    """``20``, ``60``, ``net20`` or ``net60`` → ``20`` / ``60``."""
    v = str(value).strip().lower().removeprefix("net")
    return parse_choice(Net, v, "net (20 or 60)")


# --------------------------------------------------------------------------- bounded values
_SCHEME = re.compile(r"(tcp|tls|ws|wss|ucx)://")
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?)")
#: Largest ``train --context`` (real pixels around each patch): beyond this the patches only cost memory.
MAX_CONTEXT = 256


def parse_scheduler_address(value: str | None) -> str | None:
    """A Dask scheduler address (``tcp://HOST:PORT``, ``tls://…``, ``HOST:PORT``); empty: None.
    ValueError saying what a scheduler address looks like otherwise."""
    if value is None or not str(value).strip():
        return None
    v = str(value).strip()
    if v.startswith("inproc://"):
        return v
    m = _SCHEME.match(v)
    rest = v[m.end():] if m else v
    host, sep, port = rest.rpartition(":") if not rest.endswith("]") else (rest, "", "")
    if not sep:
        host, port = rest, ""
    ok = bool(_HOST.fullmatch(host)) and (not sep or (port.isdigit() and 0 < int(port) < 65536))
    if not ok or "://" in rest:
        raise ValueError(f"{value!r} is not a Dask scheduler address; expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:8786")
    return v if m else f"tcp://{v}"


def parse_path_arg(value: object, option: str = "the path") -> str:
    """A non-empty path argument (``--out ''`` would mean the current folder by accident)."""
    text = str(value)
    if not text.strip():
        raise ValueError(f"{option} must not be empty; name a folder or file (\".\" for the current folder)")
    return text


def parse_out_file(value: object) -> str:
    """An output *file* name: not empty, not a folder-only name like ``.`` or ``dir/``."""
    from pathlib import Path

    text = parse_path_arg(value, "--out")
    if text.endswith(("/", "\\")) or Path(text).name in ("", ".", ".."):
        raise ValueError(f"--out {text!r} names a folder; name the output file, e.g. {Path(text) / 'out.tif'}")
    return text
