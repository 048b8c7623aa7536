"""The one module that reads the environment.

Every setting is read when asked for (not at import), so a test or a long-lived worker
sees the current environment. Variables:

``S2SR_CACHE_DIR``      the one tuning cache (ONNX exported on the fly, int8 models, precision gate, fp32
                        probe, TensorRT engines under ``engines/``; default ``~/.cache/s2sr-cloud``).
``S2SR_ENGINE_DIR``     TensorRT / ORT-TensorRT engines elsewhere (default ``$S2SR_CACHE_DIR/engines``).
``S2SR_CATALOG``        default ``--catalog`` of ``s2sr search``.
``S2SR_GATE_SCENE``    scene of the precision gate (default: the held-out Malmö crop or the packaged sample).
``S2SR_FP32_BACKEND``   exact-fp32 CPU kernels under ``--device auto``: ``auto`` (the faster here), ``onnxruntime``, ``openvino``.
``S2SR_TORCH_COMPILE``  ``1``/``yes``: the PyTorch runner wraps its nets in ``torch.compile`` (default off).
``S2SR_HTTP_RETRIES``   retries of one HTTP request (default 4; a whole number 0–20).
``S2SR_DASK_TIMEOUT``   seconds to wait for a Dask scheduler to answer and for a first worker (default 30; 1–3600).
``S2SR_COG_THREADS``    threads compressing COG tiles (default: the cores this process may run on; 1–256).
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
    """The engine cache folder: ``path``, else ``$S2SR_ENGINE_DIR``, else ``engines/`` in :func:`cache_dir`
    (one folder holds every tuning cache)."""
    if path is not None:
        return Path(path)
    given = env("S2SR_ENGINE_DIR")
    return Path(given) if given else cache_dir() / "engines"


def use_cache_dir(path: str | os.PathLike[str]) -> Path:
    """Make ``path`` the cache folder of this process (``--cache-dir``): checked like
    ``$S2SR_CACHE_DIR`` (an :class:`~s2sr_cloud.errors.InputError` naming it when it is not a
    writable folder), then set as ``$S2SR_CACHE_DIR`` for everything this process runs."""
    from .errors import InputError

    p = Path(path).expanduser()
    problem = _unusable_dir(p)
    if problem is not None:
        raise InputError(f"--cache-dir {str(path)!r} cannot be used as the cache folder: {problem}; "
                         "point it at a writable folder")
    os.environ["S2SR_CACHE_DIR"] = str(p.resolve())
    return p


def env_int(name: str, default: int, low: int, high: int, what: str = "") -> int:
    """``$name`` as a whole number in ``[low, high]`` (``default`` when unset or empty);
    anything else is an :class:`~s2sr_cloud.errors.InputError` naming the variable."""
    raw = env(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        from .errors import InputError

        raise InputError(f"{name} must be a whole number from {low} to {high}{what}, not {raw!r}")
    return value


#: Names of the variables a scale-out run reads (also for messages and ``--scheduler``'s envvar).
SCHEDULER_VAR = "DASK_SCHEDULER_ADDRESS"
DASK_TIMEOUT_VAR = "S2SR_DASK_TIMEOUT"


def http_retries(default: int = 4) -> int:
    """``$S2SR_HTTP_RETRIES``: retries of one HTTP request."""
    return env_int("S2SR_HTTP_RETRIES", default, 0, 20)


def dask_timeout(default: int = 30) -> int:
    """``$S2SR_DASK_TIMEOUT``: seconds to reach a Dask scheduler and to wait for a first worker."""
    return env_int(DASK_TIMEOUT_VAR, default, 1, 3600, " (seconds)")


def cog_threads() -> int:
    """``$S2SR_COG_THREADS``: threads compressing the tiles of an output COG (default: the cores this
    process may use, :func:`usable_cpus`)."""
    return env_int("S2SR_COG_THREADS", min(usable_cpus(), 256), 1, 256)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by this process's cgroup (v2 ``cpu.max`` or v1 CFS quota), or None when unlimited."""
    rel = ""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            parts = line.split(":", 2)
            if len(parts) == 3 and (parts[0] == "0" or "cpu" in parts[1].split(",")):
                rel = parts[2].lstrip("/")
                break
    except OSError:
        pass
    for d in dict.fromkeys([root / rel, root]):
        try:
            quota, period = (d / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        except (OSError, ValueError):
            pass
        try:
            quota = int((root / "cpu" / rel / "cpu.cfs_quota_us").read_text())
            period = int((root / "cpu" / rel / "cpu.cfs_period_us").read_text())
            return None if quota <= 0 else quota / period
        except (OSError, ValueError):
            pass
    return None


def usable_cpus() -> int:
    """Cores this process may use: its CPU affinity, bounded by its cgroup CPU quota (containers)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        n = min(n, max(1, int(quota)))
    return max(1, n)


def cache_dir() -> Path:
    """Per-user cache (ONNX files exported on the fly, int8 models, the precision gate), created.

    ``$S2SR_CACHE_DIR`` that is not a usable folder (a file, read-only) is an
    :class:`~s2sr_cloud.errors.InputError` naming it; when the default ``~/.cache/s2sr-cloud``
    cannot be written (a read-only home), a warning and a folder under the system's temporary
    folder instead.
    """
    import tempfile
    import warnings

    from .errors import InputError, S2SRWarning

    given = env("S2SR_CACHE_DIR")
    path = Path(given or os.path.join(os.path.expanduser("~"), ".cache", "s2sr-cloud"))
    problem = _unusable_dir(path)
    if problem is None:
        return path
    if given:
        raise InputError(f"S2SR_CACHE_DIR={given!r} cannot be used as the cache folder: {problem}; "
                         "point it at a writable folder")
    fallback = Path(tempfile.gettempdir()) / f"s2sr-cloud-cache-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    if _unusable_dir(fallback) is not None:
        raise InputError(f"no writable cache folder: {path} ({problem}) nor {fallback}; set S2SR_CACHE_DIR to a writable folder")
    warnings.warn(f"the cache folder {path} cannot be used ({problem}); caching in {fallback} instead "
                  "(set S2SR_CACHE_DIR to keep the cache)", S2SRWarning, stacklevel=2)
    return fallback


def _unusable_dir(path: Path) -> str | None:
    """Why ``path`` cannot be a writable folder (created if missing), or None."""
    if path.exists() and not path.is_dir():
        return "it is a file, not a folder"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        return "a part of its path is a file"
    except OSError as err:
        return err.strerror or str(err)
    if not os.access(path, os.W_OK | os.X_OK):
        return "it is not writable"
    return None


def fp32_cpu_backend() -> str:
    """``$S2SR_FP32_BACKEND``: which exact-fp32 CPU kernels ``--device auto`` uses — ``auto`` (default:
    the faster on this machine, measured once), ``onnxruntime`` or ``openvino``."""
    v = (env("S2SR_FP32_BACKEND", "auto") or "auto").strip().lower()
    if v not in ("auto", "onnxruntime", "openvino"):
        from .errors import InputError

        raise InputError(f"S2SR_FP32_BACKEND must be auto, onnxruntime or openvino, not {v!r}")
    return v


def torch_compile() -> bool:
    """``$S2SR_TORCH_COMPILE``: wrap the PyTorch runner's nets in ``torch.compile`` (``1``/``yes``/``true``
    on, ``0``/``no``/``false`` or unset off; anything else is an :class:`~s2sr_cloud.errors.InputError`)."""
    v = (env("S2SR_TORCH_COMPILE", "0") or "0").strip().lower()
    if v in ("1", "yes", "true", "on"):
        return True
    if v in ("0", "no", "false", "off"):
        return False
    from .errors import InputError

    raise InputError(f"S2SR_TORCH_COMPILE must be 1/yes/true or 0/no/false, not {v!r}")


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
CACHE_DIR_VAR = "S2SR_CACHE_DIR"  #: ``--cache-dir`` of ``s2sr tune``
CATALOG_VAR = "S2SR_CATALOG"  #: ``--catalog`` of ``s2sr search``
PUBLISH_VAR = "S2SR_PUBLISH"  #: ``--publish`` of ``run``/``search --run``, ``--to`` of ``publish``
S3_ENDPOINT_VAR = "S2SR_S3_ENDPOINT"  #: ``--s3-endpoint``
ASSETS_TO_VAR = "S2SR_ASSETS_TO"  #: ``--assets-to``


def http_proxy_configured() -> bool:
    """Whether HTTP(S) goes through a proxy (``GDAL_HTTP_PROXY``, ``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``ALL_PROXY``, any case): a direct connection test then says nothing about the server."""
    names = ("GDAL_HTTP_PROXY", "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")
    return any(env(n) or env(n.lower()) for n in names)
