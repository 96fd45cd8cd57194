"""HHA from metric depth: geometry checked on a ray-cast scene with a known camera, invalid depth, errors, and the
``hha`` modality of ``prepare nyuv2``.

The scene (240×320, fx = fy = 260 px): a floor, a wall and a box, seen by a camera 1.3 m above the floor, pitched
down 12° and rolled 4°, its depth ray cast exactly per pixel. Measured on it (``cd tests && python test_hha.py``
prints every figure): gravity 0.61° off the truth, height within 5.6 cm (median 1.6 cm), angle within 0.61° (median
0.19°) away from surface edges. The tolerances below sit a little above these figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_helpers import make_nyuv2_arrays, write_nyuv2_mat
from rgbxseg.cli import main
from rgbxseg.data import (
    CameraIntrinsics,
    DatasetError,
    HHAChannels,
    RGBXDataset,
    compute_hha,
    estimate_gravity,
    hha_channels,
    point_cloud,
    prepare_nyuv2,
    surface_normals,
)
from rgbxseg.data.nyuv2 import KINECT_V1_RGB_INTRINSICS, KINECT_V1_RGB_INTRINSICS_0_BASED
from rgbxseg.data.synthetic import build_scene
from rgbxseg.data.synthetic import render as render_room
from rgbxseg.data.synthetic.render import focal_px

HEIGHT, WIDTH = 240, 320
CAMERA = CameraIntrinsics(fx=260.0, fy=260.0, cx=159.5, cy=119.5)
CAMERA_HEIGHT_MM = 1300.0
PITCH_DEG, ROLL_DEG = 12.0, 4.0
WALL_YAW_DEG, WALL_DISTANCE_MM = 20.0, 3500.0
BOX_MM = ((-700.0, 1400.0, 0.0), (100.0, 2200.0, 500.0))
"""World frame: X right, Y forward, Z up, floor at Z = 0, camera above the origin. The box is axis-aligned."""

FLOOR, WALL = 0, 1
BOX_TOP = 2 + 2 * 2 + 1
"""Surface labels: box faces are ``2 + 2 × axis + (ray going negative)``, so the top (seen from above) is 7."""

EDGE_BAND_PX = 3
"""Pixels this close to another surface are left out of the angle checks: their 7×7 normal window (radius 3)
straddles two planes, so their normal is a blend, by design of a square support."""

GRAVITY_TOLERANCE_DEG = 0.8
HEIGHT_TOLERANCE_CM = 7.0
HEIGHT_MEDIAN_CM = 2.0
ANGLE_TOLERANCE_DEG = 0.8
ANGLE_MEDIAN_DEG = 0.3
KINECT_GRAVITY_TOLERANCE_DEG = 1.0
"""Tolerances a little above the figures measured (module docstring)."""


def camera_rotation(pitch_deg: float, roll_deg: float) -> np.ndarray:
    """World → camera rotation (rows: the camera's right, down, forward axes in world coordinates)."""
    pitch, roll = np.radians([pitch_deg, roll_deg])
    level = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(pitch), -np.sin(pitch)], [0.0, np.sin(pitch), np.cos(pitch)]])
    spin = np.array([[np.cos(roll), np.sin(roll), 0.0], [-np.sin(roll), np.cos(roll), 0.0], [0.0, 0.0, 1.0]])
    return spin @ tilt @ level


def render(pitch_deg: float = PITCH_DEG, roll_deg: float = ROLL_DEG) -> dict[str, np.ndarray]:
    """Ray cast the scene: ``depth`` (z, float mm), ``label``, ``normal`` (camera frame, away from the camera),
    ``height`` (mm above the floor) and ``gravity`` (camera frame, down)."""
    rotation = camera_rotation(pitch_deg, roll_deg)
    xs, ys = (np.arange(WIDTH) - CAMERA.cx) / CAMERA.fx, (np.arange(HEIGHT) - CAMERA.cy) / CAMERA.fy
    rays = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None], 1.0), axis=-1)  # camera z = 1: t is the depth
    direction = rays @ rotation  # the rays in world coordinates
    origin = np.array([0.0, 0.0, CAMERA_HEIGHT_MM])
    with np.errstate(divide="ignore", invalid="ignore"):
        hits = [np.where(direction[..., 2] < 0, -origin[2] / direction[..., 2], np.inf)]
        normals = [np.broadcast_to([0.0, 0.0, 1.0], direction.shape)]
        wall = np.array([np.sin(np.radians(WALL_YAW_DEG)), np.cos(np.radians(WALL_YAW_DEG)), 0.0])
        towards = direction @ wall
        hits.append(np.where(towards > 0, (WALL_DISTANCE_MM - origin @ wall) / towards, np.inf))
        normals.append(np.broadcast_to(wall, direction.shape))
        low, high = np.array(BOX_MM[0]), np.array(BOX_MM[1])
        near = np.minimum((low - origin) / direction, (high - origin) / direction)
        far = np.maximum((low - origin) / direction, (high - origin) / direction)
    enter, axis = near.max(axis=-1), near.argmax(axis=-1)
    hits.append(np.where((enter < far.min(axis=-1)) & (enter > 0), enter, np.inf))
    normals.append(np.eye(3)[axis])
    surface = np.argmin(np.stack(hits), axis=0)
    depth = np.choose(surface, hits)
    label = np.where(
        surface < 2, surface, 2 + 2 * axis + (np.take_along_axis(direction, axis[..., None], -1)[..., 0] < 0)
    )
    normal = np.choose(surface[..., None], normals) @ rotation.T
    normal *= np.sign((normal * rays).sum(axis=-1, keepdims=True))
    height = origin[2] + depth * direction[..., 2]
    return {"depth": depth, "label": label, "normal": normal, "height": height, "gravity": rotation @ [0.0, 0.0, -1.0]}


def away_from_edges(label: np.ndarray, band: int = EDGE_BAND_PX) -> np.ndarray:
    """Pixels whose (2·band+1)² window lies on one surface."""
    padded = np.pad(label, band, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * band + 1, 2 * band + 1))
    return windows.min(axis=(-1, -2)) == windows.max(axis=(-1, -2))


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip((a * b).sum(axis=-1), -1.0, 1.0)))


def errors(scene: dict[str, np.ndarray], hha: HHAChannels) -> dict[str, float]:
    """The figures the docstrings quote: gravity, height and angle errors against the truth, on valid pixels."""
    height_error = np.abs(hha.height - scene["height"] / 10.0)
    angle_error = np.abs(hha.angle - angle_deg(scene["normal"], scene["gravity"]))[away_from_edges(scene["label"])]
    return {
        "gravity_deg": round(float(angle_deg(hha.gravity, scene["gravity"])), 3),
        "height_max_cm": round(float(np.nanmax(height_error)), 2),
        "height_median_cm": round(float(np.nanmedian(height_error)), 2),
        "angle_max_deg": round(float(np.nanmax(angle_error)), 3),
        "angle_median_deg": round(float(np.nanmedian(angle_error)), 3),
    }


def with_holes(scene: dict[str, np.ndarray]) -> np.ndarray:
    """The scene's depth in whole millimetres with 20 % random zeros, a NaN block and one of each invalid value."""
    depth = np.round(scene["depth"]).astype(np.float32)
    depth[np.random.default_rng(0).random(depth.shape) < 0.2] = 0
    depth[100:140, 200:260] = np.nan
    depth[0, :5] = (-1, np.inf, -np.inf, 0, np.nan)
    return depth


def room_gravity_errors(seeds: range) -> list[float]:
    """Gravity error (degrees) on rooms of the package's synthetic generator: furniture, Kinect noise and holes."""
    focal = focal_px(WIDTH)
    camera = {"fx": focal, "fy": focal, "cx": WIDTH / 2 - 0.5, "cy": HEIGHT / 2 - 0.5}
    found = []
    for seed in seeds:
        room = build_scene(seed)
        forward, right, up = room.camera.axes()  # room y is up; camera x right, y down, z forward
        truth = np.array([-right[1], up[1], -forward[1]])
        depth = render_room(room, HEIGHT, WIDTH, seed)["depth"]
        found.append(round(float(angle_deg(hha_channels(depth, camera).gravity, truth)), 3))
    return found


@pytest.fixture(scope="module")
def scene() -> dict[str, np.ndarray]:
    return render()


def test_scene_has_every_surface(scene: dict[str, np.ndarray]) -> None:
    labels, counts = np.unique(scene["label"], return_counts=True)
    assert {FLOOR, WALL, BOX_TOP} <= set(labels.tolist()) and counts.min() > 200
    assert np.isfinite(scene["depth"]).all() and scene["depth"].min() > 1000


def test_gravity_height_and_angle_match_the_scene(scene: dict[str, np.ndarray]) -> None:
    """Measured: gravity 0.61° off (normals blended across the floor–wall crease in the 21×21 windows pull it, as in
    the original; 0.26° at 480×640), height within 5.6 cm (median 1.6 cm: that tilt over up to 6 m of depth), angle
    within 0.61° (median 0.19°) on pixels away from surface edges."""
    hha = hha_channels(scene["depth"], CAMERA)
    figures = errors(scene, hha)
    assert figures["gravity_deg"] < GRAVITY_TOLERANCE_DEG
    assert figures["height_max_cm"] < HEIGHT_TOLERANCE_CM and figures["height_median_cm"] < HEIGHT_MEDIAN_CM
    assert figures["angle_max_deg"] < ANGLE_TOLERANCE_DEG and figures["angle_median_deg"] < ANGLE_MEDIAN_DEG
    keep = away_from_edges(scene["label"])
    for label, expected in ((FLOOR, 0.0), (BOX_TOP, 0.0), (WALL, 90.0)):  # normals point away from the camera
        assert abs(np.median(hha.angle[keep & (scene["label"] == label)]) - expected) < ANGLE_TOLERANCE_DEG
    floor = scene["label"] == FLOOR
    assert abs(np.median(hha.height[floor])) < HEIGHT_MEDIAN_CM
    box_top = np.median(hha.height[scene["label"] == BOX_TOP])
    assert abs(box_top - BOX_MM[1][2] / 10) < HEIGHT_MEDIAN_CM


def test_disparity_and_quantisation_follow_the_original(scene: dict[str, np.ndarray]) -> None:
    depth = scene["depth"].copy()
    depth[:20, :20] = 800.0  # nearer than 1 m: disparity floored at 31000 / 100 = 310, saturating at 255
    hha = hha_channels(depth, CAMERA)
    np.testing.assert_allclose(hha.disparity, 31000.0 / np.maximum(depth / 10.0, 100.0), rtol=1e-12)
    image = compute_hha(depth, CAMERA)
    assert image.dtype == np.uint8 and image.shape == (HEIGHT, WIDTH, 3)
    expected = np.floor(np.clip(np.stack([hha.disparity, hha.height, hha.angle + 38.0], -1), 0, 255) + 0.5)
    assert np.array_equal(image, expected.astype(np.uint8))
    assert (image[:20, :20, 0] == 255).all()
    floor, wall = scene["label"] == FLOOR, scene["label"] == WALL
    assert abs(np.median(image[floor][:, 2]) - 38) <= 1 and abs(np.median(image[wall][:, 2]) - 128) <= 1


def test_pieces_agree_with_the_scene(scene: dict[str, np.ndarray]) -> None:
    points = point_cloud(scene["depth"], CAMERA)
    assert np.array_equal(points[..., 2], scene["depth"])
    assert points[7, 11, 0] == pytest.approx(scene["depth"][7, 11] * (11 - CAMERA.cx) / CAMERA.fx)
    normals = surface_normals(scene["depth"], CAMERA)
    keep = away_from_edges(scene["label"])
    assert angle_deg(normals, scene["normal"])[keep].max() < 0.01  # exact depth: planes are fitted exactly
    gravity = estimate_gravity(scene["normal"])  # true normals: no blending at creases
    assert angle_deg(gravity, scene["gravity"]) < 1e-6 and np.linalg.norm(gravity) == pytest.approx(1.0)


def test_intrinsics_of_another_size_are_scaled(scene: dict[str, np.ndarray]) -> None:
    double = {"fx": 2 * CAMERA.fx, "fy": 2 * CAMERA.fy, "cx": 2 * CAMERA.cx + 0.5, "cy": 2 * CAMERA.cy + 0.5}
    scaled = compute_hha(scene["depth"], double, intrinsics_size=(2 * HEIGHT, 2 * WIDTH))
    assert np.array_equal(scaled, compute_hha(scene["depth"], CAMERA))
    with pytest.raises(ValueError, match=r"for another image size; pass intrinsics_size=\(height, width\)"):
        compute_hha(scene["depth"], KINECT_V1_RGB_INTRINSICS)


def test_holes_do_not_poison_the_result(scene: dict[str, np.ndarray]) -> None:
    """Measured with 20 % random zeros and a NaN block (:func:`with_holes`): gravity 0.60° off, height within 5.6 cm
    (median 1.6 cm), angle within 1.2° (median 0.23°): as without holes, but for millimetre rounding."""
    depth = with_holes(scene)
    invalid = ~(np.isfinite(depth) & (depth > 0))
    hha = hha_channels(depth, CAMERA)
    assert angle_deg(hha.gravity, scene["gravity"]) < GRAVITY_TOLERANCE_DEG
    image = hha.to_image()
    assert image.dtype == np.uint8 and (image[invalid] == 0).all() and (image[~invalid, 0] > 0).all()
    for channel in (hha.disparity, hha.height):
        assert np.isnan(channel[invalid]).all() and np.isfinite(channel[~invalid]).all()
    assert np.isfinite(hha.angle[~invalid]).all()
    assert np.abs(hha.height - scene["height"] / 10)[~invalid].max() < HEIGHT_TOLERANCE_CM
    as_uint16 = np.nan_to_num(np.clip(depth, 0, None), posinf=0).astype(np.uint16)
    assert np.array_equal(compute_hha(as_uint16, CAMERA), image)


def test_unmeasured_pixels_shape_neither_normals_nor_gravity(scene: dict[str, np.ndarray]) -> None:
    """Like NYUv2's refined depth with the raw map's zeros: garbage in-painted depth outside ``valid`` changes
    nothing but its own disparity and height, and a hole wider than the window still gets normals."""
    measured = np.ones(scene["depth"].shape, dtype=bool)
    measured[60:200, 40:120] = False
    painted = scene["depth"].copy()
    painted[60:200, 40:120] = np.random.default_rng(1).uniform(1000, 9000, (140, 80))
    masked = hha_channels(painted, CAMERA, valid=measured)
    assert np.array_equal(masked.gravity, hha_channels(np.where(measured, scene["depth"], 0), CAMERA).gravity)
    assert angle_deg(masked.gravity, scene["gravity"]) < GRAVITY_TOLERANCE_DEG
    assert np.isfinite(masked.angle).all()  # inside the hole: fitted from the in-painted depth
    inside = (slice(60, 200), slice(40, 120))
    assert np.array_equal(masked.disparity[inside], 31000.0 / np.maximum(painted[inside] / 10, 100))
    with pytest.raises(ValueError, match="pass one mask per pixel"):
        hha_channels(painted, CAMERA, valid=measured[:, :-1])
    with pytest.raises(ValueError, match="True where the depth was measured"):
        hha_channels(painted, CAMERA, valid=np.zeros_like(measured))


def test_one_wall_in_view_keeps_the_camera_down_axis() -> None:
    """Only a wall fixes no rotation about its normal: the estimate stays on the wall plane, nearest the start."""
    view = render(pitch_deg=-15.0)  # looking up: nothing but the wall
    assert set(np.unique(view["label"]).tolist()) == {WALL}
    gravity = hha_channels(view["depth"], CAMERA).gravity
    wall = view["normal"][HEIGHT // 2, WIDTH // 2]
    down = np.array([0.0, 1.0, 0.0]) - wall[1] * wall
    assert abs(gravity @ wall) < np.sin(np.radians(0.1))
    assert angle_deg(gravity, down / np.linalg.norm(down)) < 0.1


def test_kinect_like_rooms() -> None:
    """Measured on rooms 0–3 of the package's synthetic generator: gravity 0.13°, 0.12°, 0.54° and 0.49° off."""
    assert max(room_gravity_errors(range(4))) < KINECT_GRAVITY_TOLERANCE_DEG


def test_errors_say_what_to_pass(scene: dict[str, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="is it metres"):
        compute_hha(scene["depth"] / 1000.0, CAMERA)
    with pytest.raises(ValueError, match=r"one \(H, W\) map in millimetres; got shape \(240, 320, 1\)"):
        compute_hha(scene["depth"][..., None], CAMERA)
    with pytest.raises(ValueError, match="no valid pixel"):
        compute_hha(np.full((8, 8), np.nan), CAMERA)
    with pytest.raises(ValueError, match="no valid pixel"):
        compute_hha(np.zeros((8, 8), np.uint16), CAMERA)
    with pytest.raises(ValueError, match="integer or float millimetres"):
        compute_hha(scene["depth"] > 0, CAMERA)
    with pytest.raises(ValueError, match=r"lack \['cy'\]"):
        compute_hha(scene["depth"], {"fx": 1.0, "fy": 1.0, "cx": 1.0})


@pytest.fixture(scope="module")
def nyu_hha(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """``rgbxseg prepare nyuv2 --hha`` on a miniature .mat (12×16 frames of random depth)."""
    arrays = make_nyuv2_arrays(12, 16, seed=2)
    mat = write_nyuv2_mat(tmp_path_factory.mktemp("raw") / "nyu_depth_v2_labeled.mat", arrays)
    out = tmp_path_factory.mktemp("nyuv2") / "nyuv2"
    assert main(["prepare", "nyuv2", "--mat", str(mat), "--out", str(out), "--hha", "--quiet"]) == 0
    return mat, out, arrays


def test_prepare_nyuv2_writes_hha_for_every_sample(nyu_hha: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    _, out, arrays = nyu_hha
    meta = json.loads((out / "meta.json").read_text())
    spec = meta["modalities"]["hha"]
    assert (spec["dir"], spec["encoding"], spec["dtype"], spec["channels"]) == ("hha", "hha", "uint8", 3)
    stems = sorted(f"{i:04d}" for i in range(1449))
    assert sorted(path.stem for path in (out / "hha").glob("*.png")) == stems
    for stem in ("0000", "0700", "1448"):
        image = np.asarray(Image.open(out / "hha" / f"{stem}.png"))
        assert image.dtype == np.uint8 and image.shape == (12, 16, 3)
        depth = np.asarray(Image.open(out / "depth" / f"{stem}.png"))
        measured = arrays["rawDepths"][int(stem)] > 0
        expected = compute_hha(depth, KINECT_V1_RGB_INTRINSICS_0_BASED, valid=measured, intrinsics_size=(480, 640))
        assert np.array_equal(image, expected)
    assert tuple(RGBXDataset(out, split="test", modalities=("hha",))[0]["hha"].shape) == (3, 12, 16)


def test_hha_is_part_of_the_fingerprint(
    nyu_hha: tuple[Path, Path, dict[str, np.ndarray]], capsys: pytest.CaptureFixture[str]
) -> None:
    mat, out, _ = nyu_hha
    with pytest.raises(DatasetError, match="made from other sources or options"):
        prepare_nyuv2(mat, out, progress=False)
    assert main(["prepare", "nyuv2", "--mat", str(mat), "--out", str(out), "--hha", "--quiet"]) == 0
    assert "was already complete" in capsys.readouterr().out


if __name__ == "__main__":
    view = render()
    figures = {
        "scene": errors(view, hha_channels(view["depth"], CAMERA)),
        "scene_with_holes": errors(view, hha_channels(with_holes(view), CAMERA)),
        "synthetic_rooms_gravity_deg": room_gravity_errors(range(4)),
    }
    print(json.dumps(figures, indent=1))
