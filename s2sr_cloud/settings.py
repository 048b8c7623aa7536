"""The one module that reads the environment.

Every setting is read when asked for (not at import), so a test or a long-lived worker
sees the current environment. Variables:

``S2SR_ENGINE_DIR``     TensorRT / ORT-TensorRT engine cache folder (default ``./engines``).
``S2SR_CACHE_DIR``      per-user cache (ONNX exported on the fly; default ``~/.cache/s2sr-cloud``).
``S2SR_CATALOG``        default ``--catalog`` of ``s2sr search``.
``S2SR_GATE_SCENE``    scene of the precision gate (default: the held-out Malmö crop or the packaged sample).
``S2SR_FP32_BACKEND``   exact-fp32 CPU kernels under ``--device auto``: ``auto`` (the faster here), ``onnxruntime``, ``openvino``.
``S2SR_HTTP_RETRIES``   retries of one HTTP request (default 4).
``S2SR_S3_UNSIGNED``    ``YES``: never sign S3 reads, even with credentials set.
``CDSE_S3_ACCESS_KEY`` / ``CDSE_S3_SECRET_KEY`` (or the AWS pair), ``CDSE_S3_ENDPOINT``,
``CDSE_S3_HTTPS``       Copernicus Data Space S3 access.
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_PROFILE``, ``AWS_REGION`` /
``AWS_DEFAULT_REGION``  S3 reads (signed when set) and the S3 publish store.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable pairs that give CDSE S3 access, in order of preference.
CDSE_KEY_VARS = (("CDSE_S3_ACCESS_KEY", "CDSE_S3_SECRET_KEY"), ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
CDSE_ENDPOINT = "eodata.dataspace.copernicus.eu"


def env(name: str, default: str | None = None) -> str | None:
    """``$name`` if set and not empty, else ``default``."""
    value = os.environ.get(name)
    return value if value else default


def engine_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The engine cache folder: ``path``, else ``$S2SR_ENGINE_DIR``, else ``./engines``."""
    if path is not None:
        return Path(path)
    return Path(env("S2SR_ENGINE_DIR", "engines") or "engines")


def cache_dir() -> Path:
    """Per-user cache (ONNX files exported on the fly from checkpoints)."""
    return Path(env("S2SR_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "s2sr-cloud"))


def fp32_cpu_backend() -> str:
    """``$S2SR_FP32_BACKEND``: which exact-fp32 CPU kernels ``--device auto`` uses — ``auto`` (default:
    the faster on this machine, measured once), ``onnxruntime`` or ``openvino``."""
    v = (env("S2SR_FP32_BACKEND", "auto") or "auto").strip().lower()
    if v not in ("auto", "onnxruntime", "openvino"):
        from .errors import InputError

        raise InputError(f"S2SR_FP32_BACKEND must be auto, onnxruntime or openvino, not {v!r}")
    return v


def default_catalog() -> str:
    return env("S2SR_CATALOG", "earth-search") or "earth-search"


def cdse_credentials() -> tuple[str, str] | None:
    """The first complete CDSE S3 key pair of :data:`CDSE_KEY_VARS`, or None."""
    for key_var, secret_var in CDSE_KEY_VARS:
        key, secret = env(key_var), env(secret_var)
        if key and secret:
            return key, secret
    return None


def cdse_s3_endpoint() -> str:
    return env("CDSE_S3_ENDPOINT", CDSE_ENDPOINT) or CDSE_ENDPOINT


def cdse_s3_https() -> str:
    return env("CDSE_S3_HTTPS", "YES") or "YES"


def aws_region(default: str = "us-east-1") -> str:
    return env("AWS_REGION") or env("AWS_DEFAULT_REGION") or default


def s3_unsigned() -> bool:
    """``$S2SR_S3_UNSIGNED``: never sign S3 reads (public buckets), even with credentials around."""
    return (env("S2SR_S3_UNSIGNED") or "").upper() in ("YES", "TRUE", "1")


def aws_credentials_present() -> bool:
    """True when S3 reads can be signed: keys, a profile, or a shared credentials file."""
    if s3_unsigned():
        return False
    if env("AWS_ACCESS_KEY_ID") and env("AWS_SECRET_ACCESS_KEY"):
        return True
    if env("AWS_PROFILE") or env("AWS_WEB_IDENTITY_TOKEN_FILE"):
        return True
    shared = env("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(os.path.expanduser("~"), ".aws", "credentials")
    return os.path.isfile(shared)


# --- names of the variables that command-line options fall back to ---------------------------
# Typer reads these itself (``typer.Option(envvar=...)``); the names live here with the others.
ENGINE_DIR_VAR = "S2SR_ENGINE_DIR"  #: ``--engine-dir`` of ``s2sr engine``
CATALOG_VAR = "S2SR_CATALOG"  #: ``--catalog`` of ``s2sr search``
PUBLISH_VAR = "S2SR_PUBLISH"  #: ``--publish`` of ``run``/``search --run``, ``--to`` of ``publish``
S3_ENDPOINT_VAR = "S2SR_S3_ENDPOINT"  #: ``--s3-endpoint``
ASSETS_TO_VAR = "S2SR_ASSETS_TO"  #: ``--assets-to``
DASK_SCHEDULER_VAR = "DASK_SCHEDULER_ADDRESS"  #: ``--scheduler`` (Dask's own variable)
