"""Tests of the strict-JSON conversion and of the derived blocks summarize() adds to results.

The recorded fixture's numbers are checked against hand computations.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from avalanche_ext.report import summarize
from avalanche_ext.utils import to_jsonable

__all__: list[str] = []


def test_to_jsonable_converts_numpy_torch_and_nan():
    data = {
        "a": np.float32(0.5),
        "b": np.int64(3),
        "c": np.array([[1.0, np.nan], [np.inf, 2.0]]),
        "d": torch.tensor([0.25, float("nan")]),
        "e": torch.tensor(7),
        "f": (np.bool_(True), Path("x/y")),
        np.int64(4): {1, 2},
        "g": float("-inf"),
    }
    converted = to_jsonable(data)
    assert converted == {
        "a": 0.5,
        "b": 3,
        "c": [[1.0, None], [None, 2.0]],
        "d": [0.25, None],
        "e": 7,
        "f": [True, "x/y"],
        4: [1, 2],
        "g": None,
    }
    assert type(converted["b"]) is int and type(converted["a"]) is float
    json.dumps(converted, allow_nan=False)
    with pytest.raises(TypeError, match="object"):
        to_jsonable({"x": object()})


def test_summarize_fixture_by_hand(example_results):
    discovery = copy.deepcopy(example_results["discovery"])
    out = summarize(example_results)
    assert out is example_results
    streaming = out["streaming"]
    # R = [[0.8125, 0, 0], [0.735, 0.6575, 0], [0.74, 0.4525, 0.285]]
    assert streaming["in_domain"] == pytest.approx((0.8125 + 0.6575 + 0.285) / 3)  # 0.585
    assert streaming["backward_transfer"] == pytest.approx((0.735 + 0.74 + 0.4525) / 3)
    assert streaming["next_domain"] == 0.0 and streaming["forward_transfer"] == 0.0
    # weighted by test sizes 400/400/200: (296 + 181 + 57) / 1000 = 0.534 = the logged stream acc
    assert streaming["average_accuracy"] == pytest.approx(0.534)
    assert streaming["average_accuracy"] == pytest.approx(out["final"]["stream_accuracy"])
    # ((0.8125 - 0.74) + (0.6575 - 0.4525)) / 2 = 0.13875 (logged rounded: 0.1387)
    assert streaming["average_forgetting"] == pytest.approx(0.13875)
    assert streaming["average_forgetting"] == pytest.approx(
        out["final"]["stream_forgetting"], abs=1e-4
    )
    long_tail = out["long_tail"]
    # counts 500 500 320 200 120 | 80 50 30 | 15 5 ; acc .86 .84 .71 .55 .62 | .48 .40 .31 | .35 .22
    assert long_tail["groups"] == {"many": [0, 1, 2, 3, 4], "medium": [5, 6, 7], "few": [8, 9]}
    assert long_tail["many_acc"] == pytest.approx(3.58 / 5)
    assert long_tail["medium_acc"] == pytest.approx(1.19 / 3)
    assert long_tail["few_acc"] == pytest.approx(0.285)
    assert long_tail["lowest_recall_class"] == 9
    assert out["discovery"] == discovery  # filled by others, left alone
    json.dumps(out, allow_nan=False)


def test_summarize_uses_long_tail_config(example_results):
    example_results["long_tail_config"] = {"many": 400, "few": 10, "split_by_tail": False}
    long_tail = summarize(example_results)["long_tail"]
    assert long_tail["thresholds"] == {"many": 400, "few": 10}
    assert long_tail["groups"]["many"] == [0, 1] and long_tail["groups"]["few"] == [9]


def test_summarize_makes_nan_and_numpy_strict_json():
    results = {
        "accuracy_matrix": np.array([[0.5]]),
        "per_class_accuracy": [np.float64(0.5), float("nan"), None],
        "scenario": {"train_class_counts": [np.int64(10), 10, 10]},
        "final": {"stream_accuracy": np.float32(0.5), "stream_forgetting": float("nan")},
    }
    out = summarize(results)
    assert out["per_class_accuracy"] == [0.5, None, None]
    assert out["final"]["stream_forgetting"] is None
    assert out["streaming"]["average_forgetting"] is None
    assert out["long_tail"]["medium_acc"] is None  # all in "few" (< 20): no test sample in medium
    assert not any(isinstance(v, float) and math.isnan(v) for v in out["streaming"].values())
    json.dumps(out, allow_nan=False)


def test_summarize_without_data_adds_nothing():
    assert summarize({"config": "x.py"}) == {"config": "x.py"}


def test_discovery_run_long_tail_block_leaves_the_unlabeled_novel_classes_out():
    # 4 known classes with a step tail (2 x 500, 2 x 5 images) + 2 novel classes arriving
    # unlabeled with 500 images each: they are not many-shot classes of anybody's long tail
    results = {
        "scenario": {
            "train_class_counts": [500, 500, 5, 5, 500, 500],
            "novel_classes": [4, 5],
            "hide_novel_labels": True,
        },
        "per_class_accuracy": [0.9, 0.8, 0.3, 0.1, 0.0, 0.5],
    }
    block = summarize(results)["long_tail"]
    grouped = sorted(c for ids in block["groups"].values() for c in ids)
    assert 4 not in grouped and 5 not in grouped
    assert block["groups"]["many"] == [0, 1] and block["groups"]["few"] == [2, 3]
    assert block["many_acc"] == pytest.approx(0.85) and block["few_acc"] == pytest.approx(0.2)
    assert block["lowest_recall"] == pytest.approx(0.1) and block["lowest_recall_class"] == 3
    assert "known" in block["classes"]
    # the same classes labelled (the demo's split shows the labels): every class counts
    results["scenario"]["hide_novel_labels"] = False
    results.pop("long_tail")
    block = summarize(results)["long_tail"]
    assert block["lowest_recall"] == 0.0 and "classes" not in block
