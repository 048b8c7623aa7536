"""Exception and warning hierarchy.

Every expected failure is an :class:`S2SRError`; the CLI maps each class to an exit code
and prints the message without a traceback. Broken invariants raise
:class:`S2SRInternalError`, which is *not* an S2SRError, so it surfaces as a bug.
Messages say what was wrong, what was expected and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar


class S2SRError(Exception):
    """Base class of all expected, user-actionable failures."""

    exit_code: ClassVar[int] = 1


class S2SRInternalError(Exception):
    """A broken invariant: a bug in s2sr-cloud, please report it."""


# --- input / band model ---------------------------------------------------------------
class InputError(S2SRError):
    """The input data cannot be used as given."""

    exit_code = 2


class UnknownBand(InputError):
    """A band name that is not a Sentinel-2 band."""


class ShapeMismatch(InputError):
    """Arrays whose shapes do not fit the 10/20/60 m grids."""


# --- catalogs --------------------------------------------------------------------------
class CatalogError(S2SRError):
    """A STAC catalog could not be searched or read."""

    exit_code = 3


class NoItemsFound(CatalogError):
    """A search matched no item."""


class CatalogHTTPError(CatalogError):
    """The catalog answered with an HTTP error."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


# --- assets / geometry -----------------------------------------------------------------
class AssetError(S2SRError):
    """An item lacks an asset, or an asset key is unknown."""

    exit_code = 4


class MissingAsset(AssetError):
    """An item has no asset for a needed band."""


class UnknownAsset(AssetError):
    """An asset key that the catalog profile does not know."""


class GeometryError(S2SRError):
    """A bounding box or CRS problem."""

    exit_code = 5


class BBoxOutsideItem(GeometryError):
    """The requested area does not intersect the item."""


class CRSMismatch(GeometryError):
    """Rasters that should share a CRS do not."""


# --- raster I/O ------------------------------------------------------------------------
class RasterReadError(S2SRError):
    """A raster could not be read: corrupt/truncated file, HTTP 403/404/5xx after retries."""

    exit_code = 6


# --- models ----------------------------------------------------------------------------
class ModelError(S2SRError):
    """A checkpoint, ONNX file or engine cannot be used."""

    exit_code = 7


class CheckpointMismatch(ModelError):
    """A checkpoint of the wrong net, variant or shape."""


class EngineMismatch(ModelError):
    """An ONNX file or TensorRT engine that does not match what is expected."""


class BackendUnavailable(ModelError):
    """The requested inference backend cannot run here."""


class EngineAccuracyError(ModelError):
    """A built engine disagrees with the fp32 model by more than its tolerance."""


class MissingDependency(S2SRError):
    """An optional dependency (an extra) is not installed."""

    exit_code = 8


# --- outputs ---------------------------------------------------------------------------
class OutputError(S2SRError):
    """An output cannot be written."""

    exit_code = 9


class OutputExists(OutputError):
    """The output exists and overwriting was not asked for."""


class DiskFull(OutputError):
    """No space left on the output device."""


class OutputLocked(OutputError):
    """Another s2sr process is writing the same output right now."""


class PublishError(S2SRError):
    """Publishing to a STAC target failed."""

    exit_code = 10


# --- batches and clusters ----------------------------------------------------------------
class ClusterError(S2SRError):
    """The Dask cluster cannot be used: unreachable, lost, no workers, workers that keep dying."""

    exit_code = 3


class WorkerError(Exception):
    """An unexpected error (a bug, not an :class:`S2SRError`) that a unit raised on a worker,
    carried back as text: ``type_name`` and the worker's ``traceback`` (shown with ``-vv``)."""

    def __init__(self, message: str, type_name: str = "", traceback: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name
        self.traceback = traceback

    def __reduce__(self) -> tuple[object, ...]:  # picklable whatever the original was
        return (type(self), (str(self), self.type_name, self.traceback))


class ItemsFailed(S2SRError):
    """Some items of a batch failed; the exit code is the first failure's."""

    def __init__(self, message: str, outcomes: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.outcomes = list(outcomes)
        failed = [o for o in self.outcomes if getattr(o, "status", "") == "failed"]
        self.exit_code = int(failed[0].exit_code) if failed else 1  # type: ignore[misc]


# --- warnings --------------------------------------------------------------------------
class S2SRWarning(UserWarning):
    """Base class of s2sr-cloud warnings."""


class BoaOffsetWarning(S2SRWarning):
    """The BOA offset metadata of an item looks inconsistent."""


class BackendFallbackWarning(S2SRWarning):
    """A preferred backend was unavailable and a slower one is used."""


class NodataWarning(S2SRWarning):
    """The requested area holds no valid pixel: the output is all nodata."""


class IdleThreadsWarning(S2SRWarning):
    """Dask workers with more threads than s2sr can use (one unit at a time per worker)."""


def require(module: str, extra: str) -> object:
    """Import an optional dependency or raise :class:`MissingDependency` naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependency(
            f"this needs the optional package {module!r}; install it with "
            f"`pip install 's2sr-cloud[{extra}]'`"
        ) from err
