"""Safe names, atomic writes, output checks, DN checks, settings and option choices."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from s2sr_cloud.dn import check_dn
from s2sr_cloud.errors import InputError, OutputError, OutputExists
from s2sr_cloud.fsutil import atomic_path, check_output, safe_name, write_text_atomic
from s2sr_cloud.options import Device, Precision, parse_choice, parse_device


@pytest.mark.parametrize("raw", ["../../evil", "/etc/passwd", "a/b", "..", ".", "", "x\x00y", "a\\b", "~/x",
                                 "C:\\x", "-rf", ".hidden", "é" * 300, "a" * 400, "id with spaces"])
def test_safe_name_is_one_plain_component(raw: str, tmp_path: Path) -> None:
    name = safe_name(raw)
    assert name and "/" not in name and "\\" not in name and "\x00" not in name
    assert not name.startswith((".", "-")) and ".." not in name and len(name) <= 160
    assert (tmp_path / name).resolve().parent == tmp_path.resolve()


def test_safe_name_keeps_plain_ids_and_separates_collisions() -> None:
    assert safe_name("S2A_MSIL2A_20170613T101031_87_48") == "S2A_MSIL2A_20170613T101031_87_48"
    assert safe_name("a/b") != safe_name("a_b") == "a_b"
    assert safe_name("a/b") != safe_name("a:b")


def test_atomic_path_mode_and_cleanup(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        p = write_text_atomic(tmp_path / "rec.s2sr.json", "{}")
        assert p.stat().st_mode & 0o777 == 0o644
        with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "x.bin") as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
        assert sorted(q.name for q in tmp_path.iterdir()) == ["rec.s2sr.json"]
    finally:
        os.umask(mask)


def test_output_checks(tmp_path: Path) -> None:
    (tmp_path / "dir.tif").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "exists.tif").write_text("x")
    with pytest.raises(OutputError, match="folder"):
        check_output(tmp_path / "dir.tif")
    with pytest.raises(OutputError, match="file"):
        check_output(tmp_path / "file" / "out.tif")
    with pytest.raises(OutputExists):
        check_output(tmp_path / "exists.tif")
    assert check_output(tmp_path / "exists.tif", overwrite=True) == tmp_path / "exists.tif"
    assert check_output(tmp_path / "new" / "deep" / "o.tif").parent.is_dir()


def test_dn_checks() -> None:
    check_dn(np.array([0, 1, 9000], dtype="uint16"), "u16")
    check_dn(np.array([0.0, 1.0, 2500.0], dtype="float32"), "float DN")
    check_dn(np.zeros(4, dtype="float32"), "all nodata")
    for bad, word in [(np.array([0.1, 0.5]), "reflectance"), (np.array([-5, 3]), "negative"),
                      (np.array([1.0, np.nan]), "NaN"), (np.array([np.inf, 2.0]), "Inf")]:
        with pytest.raises(InputError, match=word):
            check_dn(bad, "x")


def test_option_choices() -> None:
    assert parse_device("CUDA:1") == "cuda:1" and parse_device("ort-trt") == Device.ORT_TRT
    assert parse_choice(Precision, "FP16", "precision") == "fp16"
    with pytest.raises(ValueError, match="fp32"):
        parse_choice(Precision, "fp64", "precision")
    with pytest.raises(ValueError, match="cuda:N"):
        parse_device("gpu")


def test_settings_and_s3_signing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from s2sr_cloud import settings
    from s2sr_cloud.io.env import gdal_options

    for v in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
              "S2SR_S3_UNSIGNED"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    assert gdal_options()["AWS_NO_SIGN_REQUEST"] == "YES"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    assert "AWS_NO_SIGN_REQUEST" not in gdal_options()
    monkeypatch.setenv("S2SR_S3_UNSIGNED", "YES")
    assert gdal_options()["AWS_NO_SIGN_REQUEST"] == "YES"
    monkeypatch.setenv("S2SR_ENGINE_DIR", str(tmp_path / "eng"))
    assert settings.engine_dir() == tmp_path / "eng" and settings.engine_dir("x") == Path("x")
