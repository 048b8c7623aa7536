"""The choices of the options every entry point shares: device, precision, net, variant.

One place for the CLI (which refuses a typo as a usage error listing the choices) and the
library (which validates backend-specific combinations and says what works instead).
Values are plain strings (:class:`enum.StrEnum`), so ``Precision.FP16 == "fp16"``.
"""

from __future__ import annotations

import re
from enum import StrEnum

#: Default back-projection iterations (= ``backproject.ITERATIONS``; here so that the CLI's
#: defaults need no NumPy: ``s2sr --help`` stays light).
ITERATIONS = 2


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
