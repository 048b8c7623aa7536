"""Environment variables and option values: bounded, parsed, and refused with a message."""

from __future__ import annotations

from pathlib import Path

import pytest

from s2sr_cloud import settings
from s2sr_cloud.errors import InputError, S2SRWarning
from s2sr_cloud.options import parse_out_file, parse_path_arg, parse_scheduler_address


@pytest.mark.parametrize(("raw", "want"), [(None, 4), ("", 4), ("0", 0), (" 7 ", 7), ("20", 20)])
def test_http_retries_parse(monkeypatch: pytest.MonkeyPatch, raw: str | None, want: int) -> None:
    if raw is None:
        monkeypatch.delenv("S2SR_HTTP_RETRIES", raising=False)
    else:
        monkeypatch.setenv("S2SR_HTTP_RETRIES", raw)
    assert settings.http_retries() == want


@pytest.mark.parametrize("raw", ["lots", "-1", "21", "1e3", "4.5"])
def test_http_retries_refused(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("S2SR_HTTP_RETRIES", raw)
    with pytest.raises(InputError, match=r"S2SR_HTTP_RETRIES must be a whole number from 0 to 20"):
        settings.http_retries()
    from s2sr_cloud.http import retry_policy

    with pytest.raises(InputError):  # every session goes through it
        retry_policy()


def test_dask_timeout_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S2SR_DASK_TIMEOUT", "5")
    assert settings.dask_timeout() == 5
    for bad in ("0", "soon", "99999"):
        monkeypatch.setenv("S2SR_DASK_TIMEOUT", bad)
        with pytest.raises(InputError, match="S2SR_DASK_TIMEOUT"):
            settings.dask_timeout()


def test_cache_dir_that_is_a_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    monkeypatch.setenv("S2SR_CACHE_DIR", str(tmp_path / "f"))
    with pytest.raises(InputError, match="S2SR_CACHE_DIR.*it is a file"):
        settings.cache_dir()
    monkeypatch.setenv("S2SR_CACHE_DIR", str(tmp_path / "f" / "below"))
    with pytest.raises(InputError, match="a part of its path is a file"):
        settings.cache_dir()
    monkeypatch.setenv("S2SR_CACHE_DIR", str(tmp_path / "new" / "cache"))
    assert settings.cache_dir() == tmp_path / "new" / "cache" and (tmp_path / "new" / "cache").is_dir()


def test_an_unwritable_home_falls_back_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("S2SR_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", "/proc")  # no folder can be made there, not even by root
    with pytest.warns(S2SRWarning, match="cannot be used"):
        got = settings.cache_dir()
    assert got.is_dir() and not str(got).startswith("/proc")


def test_scheduler_addresses() -> None:
    assert parse_scheduler_address("127.0.0.1:8786") == "tcp://127.0.0.1:8786"
    assert parse_scheduler_address("tls://sched.example:8786") == "tls://sched.example:8786"
    assert parse_scheduler_address("tcp://[::1]:8786") == "tcp://[::1]:8786"
    assert parse_scheduler_address("  ") is None and parse_scheduler_address(None) is None
    for bad in ("not a url", "garbage!!", "http://x:1", "tcp://x:99999", "tcp://", "tcp://a:b"):
        with pytest.raises(ValueError, match="not a Dask scheduler address"):
            parse_scheduler_address(bad)


def test_paths_must_not_be_empty() -> None:
    assert parse_path_arg(".", "--out") == "." and parse_out_file("d/x.npz") == "d/x.npz"
    for bad in ("", "  "):
        with pytest.raises(ValueError, match="must not be empty"):
            parse_path_arg(bad, "--out")
    for folder in (".", "..", "out/"):
        with pytest.raises(ValueError, match="names a folder"):
            parse_out_file(folder)
