"""The console script end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from rgbxseg.cli import main


def test_info_lists_every_model_with_measured_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["asymformer_b0_t"]["params"] == 33_059_576
    assert rows["asymformer_b0_t"]["paper"]["miou"]["nyuv2"] == 54.1
    assert rows["asymformer_b0_t_cat"]["paper"]["params_m"] == 31.9
    assert rows["geminifusion_mit_b5"]["params"] == 137_209_322
    assert rows["geminifusion_swin_l_w12"]["paper"]["miou"]["nyuv2"] == 60.2
    assert rows["dplnet_mit_b5"]["params"] == 88_589_279 and rows["dplnet_mit_b5"]["void_logit"]
    assert (
        rows["ktb_swin_b"]["trainable_params"] == 7_545_886 and rows["ktb_swin_b"]["paper"]["trainable_params_m"] == 7.5
    )
    assert len(rows) == 21


def test_info_counts_macs_on_the_meta_device(capsys: pytest.CaptureFixture[str]) -> None:
    """The paper's 36.0 GMACs of AsymFormer (Conv/Linear), plus its attention, without building real weights."""
    assert main(["info", "asymformer_b0_t", "--macs", "480x640", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["macs"] == {"input": [480, 640], "conv_linear": 35_977_258_368, "attention": 6_474_240_000}
    assert main(["info", "geminifusion_mit_b0", "--macs", "96x136"]) == 0
    assert "MACs at 1×96×136:" in capsys.readouterr().out


def test_info_table_for_sun_classes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "asymformer_b0_t", "--num-classes", "37"]) == 0
    out = capsys.readouterr().out
    assert "33,058,805" in out and "37 classes" in out and "RTX 3090 fp32 65" in out
    assert main(["info", "dplnet_mit_b0", "--num-classes", "9"]) == 0  # MFNet: 9 classes + the void output
    assert "10 outputs: void (never predicted) + 9 classes" in capsys.readouterr().out


def test_unknown_model_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "asymformer_b0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rgbxseg info: error: unknown model 'asymformer_b0'. Did you mean asymformer_b0_t")


def test_console_script_is_installed() -> None:
    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "rgbxseg"]
    assert script.value == "rgbxseg.cli:main"
    result = subprocess.run([sys.executable, "-m", "rgbxseg", "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("rgbxseg ")
