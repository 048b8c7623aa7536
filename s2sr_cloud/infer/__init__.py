"""Inference backends behind one :class:`~s2sr_cloud.sr.Runner` interface."""

from __future__ import annotations

from .select import DEVICES, describe_backends, load_runner, load_runners

__all__ = ["DEVICES", "describe_backends", "load_runner", "load_runners"]
