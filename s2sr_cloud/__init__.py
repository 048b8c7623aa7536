"""s2sr-cloud: Sentinel-2 super-resolution (DSen2) from STAC catalogs to COGs and STAC.

The Python face (``import s2sr_cloud as s2sr``; see ``docs/python.md``)::

    items = s2sr.search((-75.71, 37.725, -75.69, 37.745), catalog="sample")
    outcomes = s2sr.process(items, out="out")          # or client=/workers=/scheduler= (Dask)
    cube = s2sr.load(outcomes)                         # lazy xarray Dataset (odc-stac)
    sr = s2sr.super_resolve(b10, b20, b60)             # in-memory arrays (or xarray bands)

The package root imports nothing heavy: the names above are loaded on first use (module
``__getattr__``), so ``s2sr --help`` stays fast and imports neither NumPy, torch nor tensorrt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name → module that defines it (imported on first access).
_LAZY: dict[str, str] = {
    "search": "s2sr_cloud.api",
    "process": "s2sr_cloud.api",
    "load": "s2sr_cloud.cube",
    "super_resolve": "s2sr_cloud.api",
    "process_items": "s2sr_cloud.batch",
    "ModelSpec": "s2sr_cloud.batch",
    "ItemOutcome": "s2sr_cloud.batch",
    "RunParams": "s2sr_cloud.pipeline",
    "SceneResult": "s2sr_cloud.pipeline",
    "open_target": "s2sr_cloud.publish",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # for type checkers and IDEs only: at run time the names load on first use
    from .api import process as process
    from .api import search as search
    from .api import super_resolve as super_resolve
    from .batch import ItemOutcome as ItemOutcome
    from .batch import ModelSpec as ModelSpec
    from .batch import process_items as process_items
    from .cube import load as load
    from .pipeline import RunParams as RunParams
    from .pipeline import SceneResult as SceneResult
    from .publish import open_target as open_target


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 's2sr_cloud' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # next access: no __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
