"""Tests that every figure is written as a real, non-trivial PNG, including 100-class inputs.

Figures are checked by opening them with PIL, not by comparing pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avalanche_ext.report import plots

__all__: list[str] = []


def _check_png(path: str, expected: Path) -> None:
    assert Path(path) == expected
    assert expected.stat().st_size > 1000
    with Image.open(expected) as image:
        assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100


def test_accuracy_matrix_with_missing_cells(tmp_path):
    out = tmp_path / "sub" / "R.png"  # the folder is created
    _check_png(plots.plot_accuracy_matrix([[0.9, None], [0.7, 0.8]], out), out)


def test_confusion_matrix_with_100_classes(tmp_path):
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 5, size=(100, 100)) + np.eye(100, dtype=int) * 50
    cm[3] = 0  # a class without test samples must not divide by zero
    out = tmp_path / "cm.png"
    _check_png(plots.plot_confusion_matrix(cm, [f"class_{i}" for i in range(100)], out), out)


def test_small_confusion_matrix_without_names(tmp_path):
    out = tmp_path / "cm_small.png"
    _check_png(plots.plot_confusion_matrix([[3, 1], [0, 4]], None, out, normalize=False), out)


def test_per_class_accuracy_old_new_and_before(tmp_path):
    acc = [0.9, None, 0.5, 0.4, 0.2]
    out = tmp_path / "pc.png"
    path = plots.plot_per_class_accuracy(
        acc, out, old_classes=[0, 1, 2], before=[0.95, None, 0.6, 0.0, 0.0]
    )
    _check_png(path, out)
    plain = tmp_path / "pc_plain.png"
    _check_png(plots.plot_per_class_accuracy(acc, plain), plain)


def test_class_counts(tmp_path):
    out = tmp_path / "counts.png"
    _check_png(plots.plot_class_counts([5, 500, 50, 200, 20], out), out)


def test_score_histograms_raw_and_binned(tmp_path):
    rng = np.random.default_rng(1)
    raw = tmp_path / "raw.png"
    path = plots.plot_score_histograms(rng.beta(5, 2, 300), rng.beta(2, 5, 100), raw, threshold=0.5)
    _check_png(path, raw)
    edges = tmp_path / "edges.png"
    _check_png(plots.plot_binned_score_histograms([0, 0.5, 1.0], [10, 3], [1, 8], edges), edges)
    centres = tmp_path / "centres.png"
    _check_png(plots.plot_binned_score_histograms([0.25, 0.75], [10, 3], [1, 8], centres), centres)
    with pytest.raises(ValueError, match="bins"):
        plots.plot_binned_score_histograms([0, 1, 2, 3], [1], [1], tmp_path / "bad.png")


def test_accuracy_curves(tmp_path):
    out = tmp_path / "curves.png"
    path = plots.plot_accuracy_curves({"lwf": [0.9, 0.7, 0.6], "naive": [0.9, 0.5, None]}, out)
    _check_png(path, out)
