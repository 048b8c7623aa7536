"""Moved to :mod:`s2sr_cloud.stream` (block scheduling is part of the core, not of a backend).

Re-exported here so existing imports keep working.
"""

from __future__ import annotations

from ..stream import (  # noqa: F401
    BlockResult,
    LockedRunner,
    PerThreadSource,
    _BlockPool,
    _Progress,
    iter_super_resolved,
    stream_blocks_overlapped,
)
