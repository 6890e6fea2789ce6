"""The batched pipeline against torchvision's per-sample one: same distribution, same pixels."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from avalanche_ext.data.batched_transforms import (
    BATCHED_TRANSFORMS,
    compile_pipeline,
    explain_pipeline,
)
from avalanche_ext.transforms import ToTensor, build_pipeline

MEAN, STD = [0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]


def _coordinate_images(n: int, size: int = 32) -> torch.Tensor:
    """Channel 0 = row + 1, channel 1 = column + 1 (0 is left for the padding)."""
    rows = torch.arange(1, size + 1, dtype=torch.uint8).view(size, 1).expand(size, size)
    img = torch.stack([rows, rows.t(), torch.full((size, size), 7, dtype=torch.uint8)])
    return img.expand(n, 3, size, size).contiguous()


def test_crop_offsets_are_uniform_over_the_9x9_padded_positions():
    crop = compile_pipeline([v2.RandomCrop(32, padding=4)])
    out = crop(_coordinate_images(4050), torch.Generator().manual_seed(0))
    # the output's pixel (16, 16) is original pixel (top - 4 + 16, left - 4 + 16), stored as + 1
    top = out[:, 0, 16, 16].long() - 13
    left = out[:, 1, 16, 16].long() - 13
    assert top.min() == 0 and top.max() == 8 and left.min() == 0 and left.max() == 8
    counts = torch.bincount(top * 9 + left, minlength=81).double()
    chi2 = ((counts - 50) ** 2 / 50).sum()
    assert chi2 < 124.8  # chi-square, 80 degrees of freedom, p = 0.001
    # every crop is a contiguous window: row values step by one across the crop
    assert torch.all(
        (out[:, 0, 1:, 16].long() - out[:, 0, :-1, 16].long())[out[:, 0, 1:, 16] > 1] == 1
    )


def test_flip_rate_is_p_and_a_flip_mirrors_the_image():
    flip = compile_pipeline([v2.RandomHorizontalFlip(p=0.5)])
    images = _coordinate_images(10_000, size=8)
    out = flip(images, torch.Generator().manual_seed(1))
    flipped = out[:, 1, 0, 0] == 8  # column 7 (value 8) came first
    assert abs(flipped.float().mean().item() - 0.5) < 0.02  # binomial std 0.005
    assert torch.equal(out[flipped], images[flipped].flip(-1))
    assert torch.equal(out[~flipped], images[~flipped])
    never = compile_pipeline([v2.RandomHorizontalFlip(p=0.0)])
    assert torch.equal(never(images, torch.Generator().manual_seed(1)), images)


@pytest.mark.parametrize("padding_mode", ["constant", "edge", "reflect"])
def test_each_sample_equals_torchvision_at_its_offset_and_flip(padding_mode):
    """Every batched sample is bit-identical to torchvision's pipeline at one (top, left, flip)."""
    crop = v2.RandomCrop(8, padding=2, fill=3, padding_mode=padding_mode)
    steps = [crop, v2.RandomHorizontalFlip(), ToTensor(), v2.Normalize(MEAN, STD)]
    pipeline = compile_pipeline(steps)
    images = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8)
    out = pipeline(images, torch.Generator().manual_seed(2))
    for img, got in zip(images, out):
        padded = F.pad(img, [2, 2, 2, 2], fill=3, padding_mode=padding_mode)
        matches = []
        for top in range(5):
            for left in range(5):
                for flip in (False, True):
                    x = F.crop(padded, top, left, 8, 8)
                    x = F.horizontal_flip(x) if flip else x
                    x = v2.Normalize(MEAN, STD)(ToTensor()(x))
                    if torch.equal(x, got):
                        matches.append((top, left, flip))
        assert len(matches) >= 1, "not one of torchvision's outputs"


def test_normalisation_is_exact_and_fused():
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    per_sample = build_pipeline([dict(type="ToTensor"), dict(type="Normalize", mean=MEAN, std=STD)])
    expected = torch.stack([per_sample(img) for img in images])
    pipeline = compile_pipeline(per_sample)
    assert [op.name for op in pipeline.ops] == ["ToTensor+Normalize (fused)"]
    assert torch.equal(pipeline(images), expected)
    last = compile_pipeline(per_sample, memory_format=torch.channels_last)(images)
    assert last.is_contiguous(memory_format=torch.channels_last) and torch.equal(last, expected)
    assert last.dtype == torch.float32


@pytest.mark.parametrize(
    "steps",
    [
        [v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)],
        [v2.CenterCrop(24), ToTensor()],
        [v2.Grayscale(num_output_channels=3), ToTensor()],
        [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)],
    ],
    ids=["ToDtype+Normalize", "CenterCrop", "Grayscale", "ToImage"],
)
def test_deterministic_steps_equal_the_per_sample_pipeline(steps):
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    expected = torch.stack([v2.Compose(steps)(img) for img in images])
    assert torch.equal(compile_pipeline(v2.Compose(steps))(images), expected)


def test_a_step_without_batched_form_means_no_pipeline():
    steps = [dict(type="RandomResizedCrop", size=32), dict(type="ToTensor")]
    assert "RandomResizedCrop" not in BATCHED_TRANSFORMS
    assert compile_pipeline(steps) is None
    assert explain_pipeline(steps) == "RandomResizedCrop has no batched form"
    assert compile_pipeline([v2.RandomCrop(32, padding=4, padding_mode="symmetric")]) is None
    assert explain_pipeline([dict(type="ToTensor")]) is None


def test_empty_pipeline_is_the_identity():
    x = torch.randn(4, 5)
    assert torch.equal(compile_pipeline(None)(x), x)
