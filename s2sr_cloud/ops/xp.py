"""Array-library plumbing: the namespace of an array and the padding the standard lacks."""

from __future__ import annotations

from typing import Any

import numpy as np


def namespace(*arrays: Any) -> Any:
    """The array-API namespace of ``arrays`` (NumPy, CuPy, torch … through ``array-api-compat``)."""
    from array_api_compat import array_namespace

    return array_namespace(*arrays)


def device_of(x: Any) -> Any:
    """The device ``x`` lives on (``"cpu"`` for NumPy)."""
    from array_api_compat import device

    return device(x)


def is_numpy(xp: Any) -> bool:
    from array_api_compat import is_numpy_namespace

    return bool(is_numpy_namespace(xp))


def asarray_like(value: Any, like: Any, dtype: Any = None) -> Any:
    """``value`` (a NumPy array or a scalar) as an array of ``like``'s library, on ``like``'s device."""
    xp = namespace(like)
    if is_numpy(xp):
        return np.asarray(value, dtype=dtype)
    return xp.asarray(value, dtype=dtype, device=device_of(like))


def to_numpy(x: Any) -> np.ndarray:
    """``x`` as a NumPy array on the host (a copy for device arrays)."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach"):  # torch
        return x.detach().cpu().numpy()
    if hasattr(x, "get"):  # CuPy
        return x.get()
    return np.asarray(x)


def take(x: Any, index: np.ndarray, axis: int) -> Any:
    """``x`` indexed along ``axis`` by a host integer array (moved to ``x``'s device)."""
    xp = namespace(x)
    if is_numpy(xp):
        return np.take(x, index, axis=axis)
    return xp.take(x, asarray_like(index.astype(np.int64), x), axis=axis)


def reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Map indices into ``[0, n)`` by symmetric reflection (NumPy ``pad`` mode ``symmetric``)."""
    m = np.mod(idx, 2 * n)
    return np.where(m >= n, 2 * n - 1 - m, m)


def pad_axis(x: Any, before: int, after: int, axis: int, mode: str = "symmetric") -> Any:
    """``x`` padded along ``axis`` as NumPy's ``pad`` does with ``mode`` ``symmetric`` (half-sample
    reflection, repeated for pads longer than the axis), ``edge`` or ``constant`` (zeros)."""
    if before == 0 and after == 0:
        return x
    n = x.shape[axis]
    xp = namespace(x)
    if mode in ("symmetric", "edge") and before <= n and after <= n:  # slices: no index arrays
        def part(a: int, b: int) -> Any:
            sl = [slice(None)] * x.ndim
            sl[axis] = slice(a, b)
            return x[tuple(sl)]

        if mode == "symmetric":
            lo, hi = xp.flip(part(0, before), axis=axis), xp.flip(part(n - after, n), axis=axis)
        else:
            def rep(edge: Any, k: int) -> Any:
                shape = list(edge.shape)
                shape[axis] = k
                return xp.broadcast_to(edge, tuple(shape))

            lo, hi = rep(part(0, 1), before), rep(part(n - 1, n), after)
        return xp.concat([lo, x, hi], axis=axis)
    idx = np.arange(-before, n + after)
    if mode == "symmetric":
        return take(x, reflect_index(idx, n), axis)
    if mode == "edge":
        return take(x, np.clip(idx, 0, n - 1), axis)
    if mode == "constant":
        shape = list(x.shape)
        parts = []
        for k in (before, after):
            shape[axis] = k
            parts.append(xp.zeros(tuple(shape), dtype=x.dtype, device=device_of(x)))
        return xp.concat([parts[0], x, parts[1]], axis=axis)
    raise ValueError(f"unknown pad mode {mode!r}")


def strided(x: Any, start: int, step: int, count: int, axis: int) -> Any:
    """``count`` elements of ``x`` along ``axis`` from ``start`` in steps of ``step`` (a view where the
    library allows)."""
    idx = [slice(None)] * x.ndim
    idx[axis] = slice(start, start + step * (count - 1) + 1, step)
    return x[tuple(idx)]
