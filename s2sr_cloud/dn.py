"""Inputs that are not DN: refused with a message that says what to do.

The nets take Sentinel-2 digital numbers (DN = 10000 × reflectance, 0 = nodata). Inputs
in another convention would otherwise run "successfully" into a constant or ringed
output, so they are refused before anything is written:

- NaN or ±Inf anywhere → :class:`~s2sr_cloud.errors.InputError` (replace them with 0, the
  nodata value);
- negative values → error (DN are ≥ 0; an L2A BOA offset must be removed first, which
  ``s2sr run`` does from the item metadata);
- float reflectance (all values within 0–1.5 with fractional parts) → error asking to
  multiply by 10000. No conversion is guessed.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

#: Largest value a reflectance (not DN) array plausibly holds.
REFLECTANCE_MAX = 1.5


def check_dn(array: np.ndarray, what: str) -> None:
    """Raise :class:`InputError` unless ``array`` holds plausible DN (see the module doc)."""
    a = np.asarray(array)
    if a.dtype.kind == "u" or a.size == 0:
        return
    if a.dtype.kind not in "iuf":
        raise InputError(f"{what} has data type {a.dtype}; expected integer or float DN (10000 x reflectance)")
    if a.dtype.kind == "f":
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if bad:
            raise InputError(
                f"{what} holds {bad} NaN/Inf value(s); DN must be finite: set them to 0 (nodata) first"
            )
    lo = a.min()
    if lo < 0:
        raise InputError(
            f"{what} holds negative values (min {float(lo):g}); expected DN >= 0 (0 = nodata). "
            "Remove any BOA offset (L2A baseline >= 04.00: DN - 1000, clipped at 0) first"
        )
    if a.dtype.kind == "f":
        hi = float(a.max())
        if 0 < hi <= REFLECTANCE_MAX and np.any(a != np.rint(a)):
            raise InputError(
                f"{what} looks like reflectance (values 0 to {hi:.3g}), not DN; "
                "multiply by 10000 (DN = 10000 x reflectance) and try again"
            )


class CheckedSource:
    """A scene source whose every read is checked by :func:`check_dn` (local inputs)."""

    def __init__(self, source: object, label: str) -> None:
        self._source = source
        self._label = label

    @property
    def shape10(self) -> tuple[int, int]:
        return self._source.shape10  # type: ignore[attr-defined,no-any-return]

    def read(self, res: int, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        arr = self._source.read(res, rows, cols)  # type: ignore[attr-defined]
        check_dn(arr, f"{self._label} ({res} m bands)")
        return arr  # type: ignore[no-any-return]

    def __enter__(self) -> CheckedSource:
        entered = self._source.__enter__()  # type: ignore[attr-defined]
        if entered is not None:
            self._source = entered
        return self

    def __exit__(self, *exc: object) -> None:
        self._source.__exit__(*exc)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._source, name)


def check_scene(scene: object, what: str) -> object:
    """:func:`check_dn` on a scene's ``b10``, ``b20`` and ``b60`` arrays (``evaluate`` refuses what
    ``superres`` refuses); returns the scene."""
    for key in ("b10", "b20", "b60"):
        check_dn(getattr(scene, key), f"{what}:{key}")
    return scene
