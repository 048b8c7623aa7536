"""PyTorch DSen2 / VDSen2 networks (needs the ``train`` extra; never imported at inference)."""

from __future__ import annotations

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .model import DSen2, build_net

__all__ = ["Checkpoint", "DSen2", "build_net", "load_checkpoint", "save_checkpoint"]
