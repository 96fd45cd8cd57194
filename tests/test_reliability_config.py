"""Typed, range-checked configs: a bad value is refused before any data is read, in one line that names the key, the
value, the rule and where the value came from (the file or ``--set``); and the training summary says what it did."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from rgbxseg.cli import main
from rgbxseg.engine.config import (
    ConfigError,
    DataConfig,
    TrainConfig,
    bundled_configs,
    from_dict,
    load_config,
    model_kwargs,
)
from rgbxseg.engine.metrics import ConfusionMatrix
from toy_models import register_toy


def refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """``rgbxseg train`` on a dataset that does not exist (so nothing can have been read): its one-line error, after
    checking that it exited with 2 and left no output folder behind."""
    out = tmp_path / "run"
    argv = ["train", "--quiet", *args, "--set", f"data.root={tmp_path / 'no_data'}", f"output_dir={out}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert not out.exists() and err.count("\n") == 1
    return err.removeprefix("rgbxseg train: error: ").rstrip("\n")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("checkpoint_every=0", "checkpoint_every must be ≥ 1, got 0"),  # was a ZeroDivisionError after epoch 1
        ("data.batch_size=0", "data.batch_size must be ≥ 1, got 0"),  # was a ZeroDivisionError traceback
        ("epochs=0", "epochs must be ≥ 1, got 0"),  # was refused only once the dataset had been read
        ("optim.lr=-1", "optim.lr must be ≥ 0, got -1.0"),  # was torch's "Invalid learning rate: -1.0"
        ("data.flip_prob=1.5", "data.flip_prob must be in [0, 1], got 1.5"),
        ("optim.betas=[0.9,1.0]", "optim.betas must list values in [0, 1), got [0.9, 1.0]"),
        ("eval.scales=[]", "eval.scales must list values > 0, got []"),
        ("amp=fp8", "amp must be one of none, bf16, fp16, got 'fp8'"),
        ("optim.name=lion", "optim.name must be one of adamw, sgd, got 'lion'"),  # was checked only after data load
        ("optim.nesterov=true", "optim.nesterov needs name: sgd and a positive momentum"),
        ("eval.logit_upsampling=cubic", "eval.logit_upsampling must be one of bilinear, bicubic, got 'cubic'"),
        ("epochs=many", "epochs: expected int, got 'many'"),
        ("data.batchsize=2", "unknown key data.batchsize; valid keys here: batch_size, "),  # was blamed on the file
    ],
)
def test_a_bad_override_is_refused_naming_it(
    override: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert refused(tmp_path, capsys, "--config", "synthetic_quick", "--set", override).startswith(
        f"--set {override}: {message}"
    )


def test_unknown_model_kwargs_are_refused_with_the_valid_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was a TypeError traceback from the model's constructor."""
    err = refused(tmp_path, capsys, "--config", "synthetic_quick", "--set", "model.kwargs.foo=1")
    assert err.startswith("--set model.kwargs.foo=1: model.kwargs.foo: asymformer_b0_t takes no argument 'foo' (got 1)")
    assert re.search(r"valid kwargs: .*rgb_drop_path, depth_drop_path", err) and "model_name" not in err


def test_the_accepted_kwargs_come_from_the_model_constructors() -> None:
    assert model_kwargs("geminifusion_mit_b0") == ("backbone", "drop_path", "train_alpha")
    assert model_kwargs("dplnet_mit_b0") == ("backbone", "drop_path", "class_weights")
    assert load_config("dplnet_nyuv2").model.kwargs == {"class_weights": "enet_nyuv2"}


def test_a_model_argument_the_variant_fixes_is_a_one_line_error(
    synthetic_scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``backbone`` is a constructor argument, but each registered GeminiFusion variant sets its own."""
    out = tmp_path / "run"
    overrides = [f"data.root={synthetic_scenes}", f"output_dir={out}", "model.name=geminifusion_mit_b0"]
    assert (
        main(["train", "--config", "synthetic_quick", "--quiet", "--set", *overrides, "model.kwargs.backbone=b1"]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("rgbxseg train: error: model.kwargs {'backbone': 'b1'}: geminifusion_mit_b0 cannot")
    assert "multiple values for keyword argument 'backbone'" in err and not out.exists()


def test_a_bad_value_in_the_file_is_blamed_on_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "my.yaml"
    path.write_text(yaml.safe_dump({"checkpoint_every": 0, "epochs": 0, "model": {"kwargs": {"foo": 1}}}))
    err = refused(tmp_path, capsys, "--config", str(path), "--set", "epochs=2", "model.kwargs={}")
    assert err == f"{path}: checkpoint_every must be ≥ 1, got 0"  # epochs and kwargs: the overrides win


def test_a_config_that_is_not_utf8_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("# Düsseldorf run\nepochs: 2\n".encode("latin-1"))  # was a UnicodeDecodeError naming no file
    before = path.read_bytes()
    err = refused(tmp_path, capsys, "--config", str(path))
    assert err == f"{path}: not UTF-8 text (byte 3 is b'\\xfc'); save the config as UTF-8"
    assert path.read_bytes() == before


def test_the_override_named_is_the_one_that_set_the_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(tmp_path, capsys, "--config", "synthetic_quick", "--set", "data.batch_size=2", "data.batch_size=0")
    assert err.startswith("--set data.batch_size=0: data.batch_size must be ≥ 1")
    err = refused(tmp_path, capsys, "--config", "synthetic_quick", "--set", "model.kwargs={foo: 1}", "data.workers=0")
    assert err.startswith("--set model.kwargs={foo: 1}: model.kwargs.foo: asymformer_b0_t takes no argument 'foo'")


def test_a_rule_across_keys_names_both_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(tmp_path, capsys, "--config", "geminifusion_nyuv2", "--set", "epochs=10")
    assert err == (
        f"{bundled_configs()['geminifusion_nyuv2']}, --set epochs=10: schedule.stages: their epochs [100, 100, 100] "
        "add up to 300, not to epochs (10)"
    )


def test_a_malformed_override_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^override 'data.crop_size=\[64,': '\[64,' is not a YAML value"):
        load_config("synthetic_quick", ["data.crop_size=[64,"])  # was a yaml.ParserError traceback


def test_configs_built_in_code_are_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"^epochs must be ≥ 1, got 0$"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match=r"^batch_size must be ≥ 1, got 0$"):
        dataclasses.replace(DataConfig(), batch_size=0)
    with pytest.raises(ConfigError, match=r"^schedule\.stages\.epochs must be ≥ 1, got 0$") as raised:
        from_dict(TrainConfig, {"epochs": 1, "schedule": {"stages": [{"epochs": 0, "lr": 0}, {"epochs": 1, "lr": 0}]}})
    assert raised.value.keys == ("schedule.stages.epochs",)


@pytest.mark.parametrize("name", sorted(bundled_configs()))
def test_every_bundled_config_loads(name: str) -> None:
    assert load_config(name).epochs >= 1


def test_the_summary_says_what_this_call_trained_and_how_it_validated(
    synthetic_scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A resumed run reported the total epochs as its own, and the score of ``eval.scales: [0.5]`` without saying that
    ``rgbxseg eval`` scores scale 1.0 unless told."""
    name = register_toy(monkeypatch)
    args = ["train", "--config", "synthetic_quick", "--quiet", "--set", f"data.root={synthetic_scenes}",
            f"output_dir={tmp_path / 'run'}", f"model.name={name}", "data.crop_size=[32,32]", "epochs=1"]  # fmt: skip
    assert main(args) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert re.fullmatch(
        r"trained 1 epoch \(6 iterations in all, [\d.]+ img/s\); [\d.]+ mIoU on the test split, validated as "
        r"`rgbxseg eval --scales 0.5` \(the config's eval section; eval's default is scale 1.0\)",
        first,
    )
    assert main([*args, "epochs=2", "eval.scales=[1.0]", "--resume"]) == 0
    resumed = capsys.readouterr().out.splitlines()[0]
    assert re.fullmatch(
        r"resumed after epoch 1 and trained epoch 2 \(12 iterations in all, [\d.]+ img/s\); [\d.]+ mIoU on the test "
        r"split, validated at scale 1.0, as rgbxseg eval by default",
        resumed,
    )


def test_the_json_scores_say_they_are_fractions() -> None:
    matrix = ConfusionMatrix(2)
    matrix.update(torch.tensor([[0, 1]]), torch.tensor([[1, 2]]))
    report = json.loads(json.dumps(matrix.compute().to_dict()))
    assert report["miou"] == 1.0 and "fractions in [0, 1]" in report["units"] and "percent" in report["units"]
