"""s2sr-cloud: Sentinel-2 super-resolution (DSen2) from STAC catalogs to COGs and STAC.

The package root imports nothing heavy: ``s2sr --help`` must stay fast and must not
import torch or tensorrt.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
