"""Robustness evaluation: the missing- and noisy-modality cases of the sensor-failure benchmark, their expectation
formulas on hand-computed examples, the corruption statistics, determinism, and ``rgbxseg eval --robustness``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import rgbxseg
from conftest import MODEL
from rgbxseg.cli import main
from rgbxseg.data import RGBXDataset
from rgbxseg.data.failures import SENSOR_FAILURES, SensorFailure
from rgbxseg.engine.config import ConfigError, load_config
from rgbxseg.engine.robustness import (
    EXPECTATION_P,
    RobustnessCase,
    RobustTraining,
    evaluate_robustness,
    expected_miou,
    missing_sets,
    robustness_cases,
)
from rgbxseg.engine.train import train
from rgbxseg.models.registry import get_input_spec


def test_expectation_with_two_modalities_by_hand() -> None:
    miou = {frozenset(): 0.5, frozenset({"rgb"}): 0.2, frozenset({"x"}): 0.4}
    # p = 0.2: weights 0.8² = 0.64 (clean), 0.2 · 0.8 = 0.16 for each single failure; normalised by 0.96
    assert expected_miou(miou, ("rgb", "x"), 0.2) == pytest.approx((0.64 * 0.5 + 0.16 * 0.2 + 0.16 * 0.4) / 0.96)
    assert expected_miou(miou, ("rgb", "x"), 0.0) == 0.5  # nothing ever fails: the clean run


def test_expectation_with_four_modalities_by_hand() -> None:
    modalities = ("a", "b", "c", "d")
    sets = missing_sets(modalities)
    assert len(sets) == 4 + 6 + 4 and all(0 < len(s) < 4 for s in sets)
    miou = {frozenset(): 1.0, **{s: {1: 0.5, 2: 0.25, 3: 0.0}[len(s)] for s in sets}}
    # p = 0.1: k = 0: 0.9⁴ = 0.6561; k = 1: 4 × 0.1 · 0.9³ = 0.2916; k = 2: 6 × 0.01 · 0.81 = 0.0486;
    # k = 3: 4 × 0.001 · 0.9 = 0.0036; the four-failure case is not evaluated, so the weights sum to 0.9999
    expected = (0.6561 * 1.0 + 0.2916 * 0.5 + 0.0486 * 0.25 + 0.0036 * 0.0) / 0.9999
    assert expected_miou(miou, modalities, 0.1) == pytest.approx(expected)
    with pytest.raises(ValueError, match="failure probability"):
        expected_miou(miou, modalities, 1.5)


def test_the_cases_of_each_suite() -> None:
    names = [case.name for case in robustness_cases(("emm", "rmm", "nm"))]
    assert names == [
        "clean", "emm:rgb", "emm:x",
        "rmm0.25:rgb", "rmm0.25:x", "rmm0.5:rgb", "rmm0.5:x", "rmm0.75:rgb", "rmm0.75:x",
        "nm:low", "nm:mid", "nm:high",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="unknown robustness suites"):
        robustness_cases(["fog"])
    sensor = [case.name for case in robustness_cases(["sensor"])][1:]
    assert sensor == [failure.name for failure in SENSOR_FAILURES] and len(sensor) == 15
    assert len(robustness_cases()) == 12 + 15  # every suite by default


def frame(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"rgb": torch.randn(3, 96, 128, generator=generator), "x": torch.randn(1, 96, 128, generator=generator)}


def test_random_missing_zeroes_pixels_at_the_rate_and_nothing_else() -> None:
    inputs = frame()
    for rate in (0.25, 0.5, 0.75):
        out = RobustnessCase("t", "rmm", frozenset({"rgb"}), rate=rate).corrupt_one(inputs, torch.Generator())
        zeroed = (out["rgb"] == 0).all(0)  # a pixel goes as a whole, every channel
        assert zeroed.float().mean().item() == pytest.approx(rate, abs=0.02)
        assert torch.equal(out["rgb"][:, ~zeroed], inputs["rgb"][:, ~zeroed]) and torch.equal(out["x"], inputs["x"])
    entire = RobustnessCase("t", "emm", frozenset({"x"})).corrupt_one(inputs, torch.Generator())
    assert not entire["x"].any() and torch.equal(entire["rgb"], inputs["rgb"])


def test_noise_has_the_declared_statistics() -> None:
    inputs = frame()
    salt = RobustnessCase("t", "nm", noise=(0.2, 0.0)).corrupt_one(inputs, torch.Generator().manual_seed(1))
    for name, tensor in inputs.items():
        at_max = (salt[name] == tensor.max()).float().mean().item()
        at_min = (salt[name] == tensor.min()).float().mean().item()
        assert at_max == pytest.approx(0.1, abs=0.01) and at_min == pytest.approx(0.1, abs=0.01)
    gauss = RobustnessCase("t", "nm", noise=(0.0, 0.5)).corrupt_one(inputs, torch.Generator().manual_seed(1))
    for name, tensor in inputs.items():
        residual = gauss[name] - tensor
        assert residual.mean().item() == pytest.approx(0.0, abs=0.01)
        assert residual.std().item() == pytest.approx(0.5, rel=0.02)


def test_corruptions_depend_on_seed_case_and_sample_only() -> None:
    case = RobustnessCase("rmm0.5:x", "rmm", frozenset({"x"}), rate=0.5)
    rgb, x = frame()["rgb"][None].repeat(2, 1, 1, 1), frame()["x"][None].repeat(2, 1, 1, 1)
    first = case.corruption(seed=0)(rgb, x, ["a", "b"])
    again = case.corruption(seed=0)(rgb[1:], x[1:], ["b"])  # another batch: the same corruption for sample b
    other = case.corruption(seed=1)(rgb, x, ["a", "b"])
    assert torch.equal(first[1][1], again[1][0]) and not torch.equal(first[1][0], first[1][1])
    assert not torch.equal(first[1], other[1])


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return rgbxseg.save_weights(rgbxseg.create_model(MODEL), tmp_path_factory.mktemp("w") / "model.safetensors")


def test_the_report_is_reproducible_and_its_summaries_follow_the_formulas(
    weights: Path, synthetic_scenes: Path
) -> None:
    model = rgbxseg.load_model(weights)
    dataset = RGBXDataset(synthetic_scenes, "test", input_spec=model.input_spec)

    def run() -> dict:
        report = evaluate_robustness(model, dataset, num_classes=40, suites=("emm", "nm"), seed=3, progress=False)
        return {name: case["miou"] for name, case in report.to_dict()["cases"].items()} | report.summary()

    first, second = run(), run()
    assert first == second
    by_missing = {frozenset(): first["clean"], frozenset({"rgb"}): first["emm:rgb"], frozenset({"x"}): first["emm:x"]}
    assert first["emm_avg"] == pytest.approx((first["emm:rgb"] + first["emm:x"]) / 2)
    for p in EXPECTATION_P:
        assert first[f"emm_e{p:g}"] == pytest.approx(expected_miou(by_missing, ("rgb", "x"), p))
    assert first["emm:x"] != first["clean"]  # the model reads depth: losing it changes the predictions


def test_cli_robustness_writes_the_report_table_and_chart(
    weights: Path, synthetic_scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path, chart = tmp_path / "robust.json", tmp_path / "robust.png"
    argv = ["eval", "--weights", str(weights), "--data", str(synthetic_scenes), "--quiet", "--device", "cpu"]
    assert main([*argv, "--robustness", "emm", "rmm", "--json", str(report_path), "--chart", str(chart)]) == 0
    table = capsys.readouterr().out
    assert "| emm:x |" in table and "| rmm0.75:rgb |" in table and "| emm_e0.05 |" in table
    report = json.loads(report_path.read_text())
    assert len(report["cases"]) == 1 + 2 + 6 and report["seed"] == 0
    assert report["cases"]["rmm0.25:x"] == report["cases"]["rmm0.25:x"] | {"missing": ["x"], "rate": 0.25}
    assert report["protocol"]["weights"] == str(weights) and "rmm0.5_e0.1" in report["summary"]
    assert chart.read_bytes().startswith(b"\x89PNG")
    assert main([*argv, "--chart", str(tmp_path / "alone.png")]) == 2  # a chart needs --robustness


# --- realistic sensor failures, on frames of known geometry ----------------------------------------------------------


def box_scene() -> torch.Tensor:
    """(1, 60, 80) millimetres: a wall at 4 m with a box at 1.5 m (rows 20–39, columns 30–49), no holes."""
    depth = torch.full((1, 60, 80), 4000.0)
    depth[:, 20:40, 30:50] = 1500.0
    return depth


def failure(name: str) -> SensorFailure:
    return next(f for f in SENSOR_FAILURES if f.name == name)


def test_edge_holes_follow_the_box_outline_only() -> None:
    depth = box_scene()
    out = failure("depth:holes-edges").apply(depth, torch.Generator())
    holes = (out == 0)[0]
    rows, cols = torch.meshgrid(torch.arange(60), torch.arange(80), indexing="ij")
    # the box's border pixels and the wall's pixels beside them, then one more pixel of dilation on each side
    near_outline = (rows >= 18) & (rows <= 41) & (cols >= 28) & (cols <= 51)
    inside = (rows >= 22) & (rows <= 37) & (cols >= 32) & (cols <= 47)
    assert holes[20, 30] and holes[19, 40] and holes[39, 49] and holes[30, 29]
    assert not (holes & ~near_outline).any() and not (holes & inside).any()
    assert torch.equal(out[0][~holes], depth[0][~holes])


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5])
def test_hole_blobs_cover_exactly_their_share(fraction: float) -> None:
    depth = box_scene()
    out = failure(f"depth:holes-{round(fraction * 100)}").apply(depth, torch.Generator().manual_seed(0))
    holes = out == 0
    assert holes.sum().item() == round(fraction * depth.numel())
    assert torch.equal(out[~holes], depth[~holes])


def test_axial_noise_grows_with_the_square_of_distance() -> None:
    for metres in (1.0, 4.0):
        plane = torch.full((1, 200, 200), metres * 1000)
        noisy = failure("depth:axial-noise").apply(plane, torch.Generator().manual_seed(0))
        expected_sigma = 1.2 + 1.9 * (metres - 0.4) ** 2  # 1.88 mm at 1 m, 25.8 mm at 4 m
        assert (noisy - plane).std().item() == pytest.approx(expected_sigma, rel=0.03)
        assert (noisy - plane).mean().item() == pytest.approx(0.0, abs=expected_sigma * 0.02)
    holes = torch.zeros(1, 4, 4)
    assert torch.equal(failure("depth:axial-noise").apply(holes, torch.Generator()), holes)  # invalid stays invalid


def test_far_depth_is_quantised_in_steps_growing_as_z_squared() -> None:
    for metres, step in ((1.0, 2.85), (4.0, 45.6)):  # 2.85e-3 · z² in metres → mm
        ramp = torch.linspace(metres * 1000 - 150, metres * 1000 + 150, 3001)[None, None]
        levels = failure("depth:far-quantisation").apply(ramp, torch.Generator()).unique()
        assert levels.diff().median().item() == pytest.approx(step, rel=0.05)


@pytest.mark.parametrize("pixels", [2, 4, 8])
def test_misregistration_shifts_by_exactly_the_given_pixels(pixels: int) -> None:
    depth = torch.rand(1, 30, 40) * 3000 + 500
    out = failure(f"depth:shift-{pixels}").apply(depth, torch.Generator())
    assert torch.equal(out[..., pixels:], depth[..., :-pixels]) and not out[..., :pixels].any()


def test_unit_error_quarter_resolution_and_rgb_failures() -> None:
    depth = box_scene()
    assert torch.equal(failure("depth:scale-1.25").apply(depth, torch.Generator()), depth * 1.25)
    ramp = torch.arange(64.0).view(1, 8, 8) * 10 + 500
    blocky = failure("depth:quarter-res").apply(ramp, torch.Generator())
    assert torch.equal(blocky.view(1, 2, 4, 2, 4).amin((2, 4)), blocky.view(1, 2, 4, 2, 4).amax((2, 4)))
    rgb = torch.full((3, 20, 20), 200.0)
    assert failure("rgb:over-exposure").apply(rgb, torch.Generator()).eq(255).all()
    dark = failure("rgb:low-light").apply(rgb, torch.Generator().manual_seed(0))
    assert dark.mean().item() == pytest.approx(50, abs=1) and dark.std().item() == pytest.approx(4, rel=0.15)
    stripes = torch.zeros(3, 4, 18)
    stripes[..., ::2] = 90.0
    blurred = failure("rgb:motion-blur").apply(stripes, torch.Generator())
    assert blurred[..., 4:-4].sub(stripes.mean()).abs().max().item() < 6  # a 9-pixel box averages the stripes


def test_failures_act_on_stored_values_through_the_input_spec() -> None:
    spec = rgbxseg.models.ASYMFORMER_RELEASE  # B, G, R: the failure still sees R, G, B values
    depth = box_scene()
    rgb = torch.zeros(3, 60, 80)
    rgb[0] = 200.0  # red
    inputs = {"rgb": spec.rgb.normalize(rgb), "x": spec.x.normalize(depth)}
    scaled_case = RobustnessCase("depth:scale-1.25", "sensor", failure=failure("depth:scale-1.25"))
    out = scaled_case.corrupt_one(inputs, torch.Generator(), spec)
    torch.testing.assert_close(spec.x.denormalize(out["x"]), depth * 1.25, rtol=1e-5, atol=1e-2)
    assert torch.equal(out["rgb"], inputs["rgb"])
    bright = RobustnessCase("rgb:over-exposure", "sensor", failure=failure("rgb:over-exposure"))
    stored = spec.rgb.denormalize(bright.corrupt_one(inputs, torch.Generator(), spec)["rgb"])
    torch.testing.assert_close(stored[0], torch.full((60, 80), 255.0), rtol=0, atol=1e-3)
    with pytest.raises(ValueError, match="models metric_mm input, but geminifusion_sunrgbd feeds minmax_8bit"):
        failure("depth:axial-noise").check(get_input_spec("geminifusion_sunrgbd"))


# --- robust training ---------------------------------------------------------------------------------------------


def test_modality_dropout_drops_one_input_per_sample_at_its_rates() -> None:
    spec = rgbxseg.models.ASYMFORMER_TRAIN
    robust = RobustTraining(drop_rgb=0.2, drop_x=0.3)
    torch.manual_seed(0)
    rgb, x = robust(torch.ones(4000, 3, 2, 2), torch.ones(4000, 1, 2, 2), spec)
    rgb_gone, x_gone = (rgb == 0).flatten(1).all(1), (x == 0).flatten(1).all(1)
    assert rgb_gone.float().mean().item() == pytest.approx(0.2, abs=0.02)
    assert x_gone.float().mean().item() == pytest.approx(0.3, abs=0.02)
    assert not (rgb_gone & x_gone).any() and ((rgb == 0) | (rgb == 1)).all()
    torch.manual_seed(0)
    again = robust(torch.ones(4000, 3, 2, 2), torch.ones(4000, 1, 2, 2), spec)
    assert torch.equal(again[0], rgb) and torch.equal(again[1], x)  # the trainer's per-epoch reseeding repeats it


def test_sensor_failures_in_training_change_depth_only_and_need_metric_depth() -> None:
    spec = rgbxseg.models.ASYMFORMER_TRAIN
    depth = box_scene()[None].repeat(16, 1, 1, 1)
    rgb, x = torch.zeros(16, 3, 60, 80), spec.x.normalize(depth)
    torch.manual_seed(0)
    out_rgb, out_x = RobustTraining(sensor_failures=1.0)(rgb, x, spec)
    changed = (spec.x.denormalize(out_x) - depth).abs().flatten(1).amax(1) > 1e-2
    assert torch.equal(out_rgb, rgb) and changed.float().mean().item() > 0.8  # a few failures can miss the box scene
    with pytest.raises(ValueError, match="feeds minmax_8bit"):
        RobustTraining(sensor_failures=0.5).check(get_input_spec("geminifusion_sunrgbd"))


def test_dropout_settings_are_checked_in_the_config() -> None:
    with pytest.raises(ConfigError, match=r"data\.drop_rgb \+ drop_x = 1\.2"):
        load_config("synthetic_quick", ["data.drop_rgb=0.6", "data.drop_x=0.6"])
    assert load_config("synthetic_quick", ["data.drop_x=0.3"]).data.drop_x == 0.3


def test_training_with_depth_dropout_loses_less_when_depth_is_missing(synthetic_scenes: Path, tmp_path: Path) -> None:
    """Short runs of the same network, seed and data, with and without depth dropout (numbers in the closing note)."""
    drops = {}
    for name, drop in (("plain", 0.0), ("dropout", 0.5)):
        overrides = [f"data.root={synthetic_scenes}", f"output_dir={tmp_path / name}", f"data.drop_x={drop}",
                     f"model.name={MODEL}", "data.crop_size=[96,128]", "data.scale_range=[1.0,1.0]", "epochs=6",
                     "eval.scales=[1.0]"]  # fmt: skip
        result = train(load_config("synthetic_quick", overrides), progress=False)
        dataset = RGBXDataset(synthetic_scenes, "test", input_spec=result.model.input_spec)
        report = evaluate_robustness(result.model, dataset, num_classes=40, suites=("emm",), progress=False)
        drops[name] = report.metrics["clean"].miou - report.metrics["emm:x"].miou
    print(f"mIoU lost without depth: {drops}")
    assert drops["dropout"] < drops["plain"]
