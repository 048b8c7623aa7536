"""Grid operators on the Sentinel-2 10/20/60 m grids: the one leaf every layer uses.

Degradation (:mod:`.degrade`: the Wald operator and the other protocols), bilinear / nearest /
bicubic resampling and block means (:mod:`.resample`), written against the Python array API
(through ``array-api-compat``), so the same functions take NumPy, CuPy or torch arrays; the
few helpers that only build small index or kernel arrays run on the host in NumPy.

Nothing here imports another module of the package: training, the post-steps, the metrics
and the inference core all share these operators.
"""

from __future__ import annotations

from .degrade import (
    PROTOCOLS,
    WALD,
    Degradation,
    blur_reach,
    degrade,
    dilate_by_blur,
    gaussian_blur,
    gaussian_kernel,
    parse_protocol,
)
from .resample import (
    block_mean,
    lr_range,
    nearest,
    reflect_index,
    upsample,
    upsample_at,
    upsample_bicubic,
)
from .xp import namespace

__all__ = [
    "PROTOCOLS",
    "WALD",
    "Degradation",
    "block_mean",
    "blur_reach",
    "degrade",
    "dilate_by_blur",
    "gaussian_blur",
    "gaussian_kernel",
    "lr_range",
    "namespace",
    "nearest",
    "parse_protocol",
    "reflect_index",
    "upsample",
    "upsample_at",
    "upsample_bicubic",
]
