"""Paired augmentation: alignment of RGB, depth and labels, valid labels, padding, HSV, reproducible randomness."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from rgbxseg.data import Compose, Resize, TrainAugmentation
from rgbxseg.data.transforms import gaussian_blur, hsv_to_rgb, jitter_colour, jitter_hsv, resize, rgb_to_hsv

PALETTE = np.random.default_rng(0).integers(0, 256, (41, 3), dtype=np.uint8)


def _pattern_sample(height: int = 48, width: int = 64) -> dict[str, object]:
    """Blocks of classes 1..40 (and a void stripe); depth and colour are functions of the class id."""
    rows, cols = np.mgrid[0:height, 0:width]
    label = ((rows // 8) * 7 + (cols // 8)) % 40 + 1
    label[:, 10:12] = 0
    label = label.astype(np.uint8)
    return {"rgb": PALETTE[label], "depth": (label.astype(np.uint16) * 100 + 500), "label": label, "id": "p"}


def _interior(label: np.ndarray) -> np.ndarray:
    """Pixels whose 3×3 neighbourhood has a single label, away from the crop border (bilinear RGB is exact there)."""
    same = np.zeros(label.shape, bool)
    centre = label[1:-1, 1:-1]
    same[1:-1, 1:-1] = True
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            same[1:-1, 1:-1] &= label[dy : dy + centre.shape[0], dx : dx + centre.shape[1]] == centre
    return same


@pytest.mark.parametrize("seed", range(8))
def test_rgb_depth_and_labels_stay_aligned(seed: int) -> None:
    torch.manual_seed(seed)
    out = TrainAugmentation(crop_size=(40, 56), scale_range=(1.0, 2.0), hsv=False)(_pattern_sample())
    label, depth, rgb = out["label"], out["depth"], out["rgb"]
    assert label.shape == depth.shape == rgb.shape[:2] == (40, 56) and out["id"] == "p"
    assert np.array_equal(depth, label.astype(np.uint16) * 100 + 500)  # same nearest-neighbour indices
    inside = _interior(label)
    assert inside.mean() > 0.3
    assert np.abs(rgb[inside].astype(int) - PALETTE[label[inside]].astype(int)).max() <= 1


def test_labels_keep_their_values_where_bilinear_would_mix_them() -> None:
    sample = _pattern_sample()
    sample["label"] = np.array([0, 5, 20, 40], np.uint8)[sample["label"] % 4]
    allowed = {0, 5, 20, 40}
    augment = TrainAugmentation(crop_size=(48, 64), scale_range=(1.0, 2.0), seed=1)
    torch.manual_seed(0)
    for _ in range(20):
        assert set(np.unique(augment(sample)["label"]).tolist()) <= allowed
    mixed = resize(sample["label"], (70, 90), nearest=False)  # the official code's mistake
    assert not set(np.unique(mixed).tolist()) <= allowed


def test_padding_is_void_and_invalid() -> None:
    sample = _pattern_sample(20, 24)
    out = TrainAugmentation(crop_size=(48, 64), scale_range=(1.0, 1.0), flip_p=0.0, hsv=False)(sample)
    assert np.array_equal(out["label"][:20, :24], sample["label"])
    assert not out["label"][20:].any() and not out["label"][:, 24:].any()
    assert not out["depth"][20:].any() and not out["rgb"][:, 24:].any()


def test_flip_mirrors_every_entry() -> None:
    sample = _pattern_sample()
    out = TrainAugmentation(crop_size=(48, 64), scale_range=(1.0, 1.0), flip_p=1.0, hsv=False)(sample)
    for key in ("rgb", "depth", "label"):
        assert np.array_equal(out[key], sample[key][:, ::-1])


def test_hsv_conversion_matches_colorsys() -> None:
    colours = np.random.default_rng(2).random((200, 3)).astype(np.float32)
    expected = np.array([colorsys.rgb_to_hsv(*c) for c in colours])
    assert np.allclose(rgb_to_hsv(colours), expected, atol=1e-5)
    assert np.allclose(hsv_to_rgb(expected), colours, atol=1e-5)


def test_hsv_jitter_touches_rgb_only() -> None:
    sample = _pattern_sample()
    assert np.abs(jitter_hsv(sample["rgb"], 1.0, 1.0, 0.0).astype(int) - sample["rgb"]).max() <= 1
    torch.manual_seed(5)
    plain = TrainAugmentation(crop_size=(40, 56), hsv=False)(sample)
    torch.manual_seed(5)
    jittered = TrainAugmentation(crop_size=(40, 56), hsv=True)(sample)
    assert np.array_equal(plain["label"], jittered["label"]) and np.array_equal(plain["depth"], jittered["depth"])
    assert not np.array_equal(plain["rgb"], jittered["rgb"])


def test_colour_jitter_and_blur_touch_rgb_only_and_leave_other_recipes_alone() -> None:
    """GeminiFusion's photometric augmentation; disabled, it draws nothing, so AsymFormer's stream is unchanged."""
    sample = _pattern_sample()
    torch.manual_seed(5)
    plain = TrainAugmentation(crop_size=(40, 56))(sample)
    torch.manual_seed(5)
    disabled = TrainAugmentation(crop_size=(40, 56), colour_jitter_p=0.0, blur_p=0.0)(sample)
    assert all(np.array_equal(plain[k], disabled[k]) for k in ("rgb", "depth", "label"))
    torch.manual_seed(5)
    photometric = TrainAugmentation(crop_size=(40, 56), colour_jitter_p=1.0, blur_p=1.0)(sample)
    assert np.array_equal(plain["label"], photometric["label"]) and np.array_equal(plain["depth"], photometric["depth"])
    assert not np.array_equal(plain["rgb"], photometric["rgb"])
    flat = np.full((6, 7, 3), 90, np.uint8)
    assert np.array_equal(gaussian_blur(flat, 0.8), flat), "blurring a flat image changes nothing"
    assert np.array_equal(jitter_colour(flat, {"brightness": 2.0, "contrast": 1.0, "saturation": 1.0}, ["brightness"]),
                          np.full_like(flat, 180))  # fmt: skip
    grey = jitter_colour(sample["rgb"], {"brightness": 1.0, "contrast": 1.0, "saturation": 0.0}, ["saturation"])
    assert (np.ptp(grey.astype(int), axis=-1) <= 1).all(), "saturation 0 leaves grey pixels"


def test_randomness_follows_the_torch_seed() -> None:
    sample = _pattern_sample()
    augment = Compose([TrainAugmentation(crop_size=(40, 56))])

    def run(seed: int) -> list[np.ndarray]:
        torch.manual_seed(seed)
        return [augment(sample)["rgb"] for _ in range(3)]

    first, again, other = run(0), run(0), run(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    assert not np.array_equal(first[0], first[1])


class _Augmented(Dataset):
    """The same sample, augmented on every access."""

    def __init__(self) -> None:
        self.sample, self.augment = _pattern_sample(), TrainAugmentation(crop_size=(40, 56), seed=3)

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.augment(self.sample)["rgb"].copy())


def test_dataloader_workers_draw_distinct_reproducible_streams() -> None:
    def run() -> list[torch.Tensor]:
        loader = DataLoader(_Augmented(), batch_size=1, num_workers=2, generator=torch.Generator().manual_seed(11))
        return [batch[0] for batch in loader]

    first, again = run(), run()
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], first[1])  # items 0 and 1 come from different workers


def test_resize_for_evaluation() -> None:
    out = Resize((24, 32))(_pattern_sample())
    assert out["rgb"].shape == (24, 32, 3) and out["depth"].shape == out["label"].shape == (24, 32)
    assert set(np.unique(out["label"]).tolist()) <= set(np.unique(_pattern_sample()["label"]).tolist())
