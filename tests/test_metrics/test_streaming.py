"""Tests of the accuracy-matrix summaries against hand-computed values and Avalanche's forgetting.

Each expected number is derived in a comment next to its matrix.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from avalanche_ext.metrics.streaming import (
    accuracy_matrix,
    average_accuracy,
    average_forgetting,
    experience_forgetting,
    seen_accuracy_curve,
    streaming_summary,
)

__all__: list[str] = []

# R[i][j] = accuracy on test experience j after training experience i.
R3 = [
    [0.9, 0.1, 0.2],
    [0.7, 0.8, 0.3],
    [0.6, 0.4, 0.85],
]


def test_summary_of_a_square_matrix():
    summary = streaming_summary(R3)
    # diagonal: (0.9 + 0.8 + 0.85) / 3 = 0.85
    assert summary["in_domain"] == pytest.approx(0.85)
    # R[0][1], R[1][2]: (0.1 + 0.3) / 2 = 0.2
    assert summary["next_domain"] == pytest.approx(0.2)
    # below the diagonal: (0.7 + 0.6 + 0.4) / 3 = 0.566667
    assert summary["backward_transfer"] == pytest.approx(1.7 / 3)
    # above the diagonal: (0.1 + 0.2 + 0.3) / 3 = 0.2
    assert summary["forward_transfer"] == pytest.approx(0.2)
    # (0.85 + 0.2 + 0.566667 + 0.2) / 4 = 0.454167
    assert summary["score"] == pytest.approx((0.85 + 0.2 + 1.7 / 3 + 0.2) / 4)
    # last row: (0.6 + 0.4 + 0.85) / 3 = 0.616667
    assert summary["average_accuracy"] == pytest.approx(1.85 / 3)
    # j=0: 0.9 - 0.6 = 0.3, j=1: 0.8 - 0.4 = 0.4, the last experience (j=2) excluded -> 0.35
    assert summary["average_forgetting"] == pytest.approx(0.35)
    assert experience_forgetting(R3) == pytest.approx([0.3, 0.4, None])


def test_numpy_input_gives_the_same_summary():
    assert streaming_summary(np.array(R3)) == pytest.approx(streaming_summary(R3))


def test_average_accuracy_weighted_by_test_sizes_pools_samples():
    # 0.6 * 100 + 0.4 * 100 + 0.85 * 200 = 270 correct of 400 -> 0.675 (Avalanche's StreamAccuracy)
    assert average_accuracy(R3, test_sizes=[100, 100, 200]) == pytest.approx(0.675)
    assert streaming_summary(R3, test_sizes=[100, 100, 200])["average_accuracy"] == pytest.approx(
        0.675
    )
    with pytest.raises(ValueError, match="test_sizes"):
        average_accuracy(R3, test_sizes=[1, 2])


def test_one_experience_gives_none_not_nan():
    summary = streaming_summary([[0.8]])
    assert summary["in_domain"] == pytest.approx(0.8)
    for key in ("next_domain", "backward_transfer", "forward_transfer", "average_forgetting"):
        assert summary[key] is None
    # only in_domain is defined, so the score is that value
    assert summary["score"] == pytest.approx(0.8)
    assert summary["average_accuracy"] == pytest.approx(0.8)
    json.dumps(summary, allow_nan=False)


def test_empty_matrix_is_all_none():
    summary = streaming_summary([])
    assert all(value is None for value in summary.values())


def test_more_test_than_training_experiences():
    # T=2, M=3 (e.g. a held-out novel test experience)
    R = [[0.9, 0.2, 0.1], [0.7, 0.8, 0.3]]
    summary = streaming_summary(R)
    assert summary["in_domain"] == pytest.approx(0.85)  # (0.9 + 0.8) / 2
    assert summary["next_domain"] == pytest.approx(0.25)  # (0.2 + 0.3) / 2
    assert summary["backward_transfer"] == pytest.approx(0.7)  # R[1][0]
    assert summary["forward_transfer"] == pytest.approx(0.2)  # (0.2 + 0.1 + 0.3) / 3
    # only j=0 was trained before the last experience: 0.9 - 0.7
    assert summary["average_forgetting"] == pytest.approx(0.2)
    assert experience_forgetting(R) == pytest.approx([0.2, None, None])


def test_more_training_than_test_experiences():
    # T=3, M=2: both test experiences were trained before the last one
    R = [[0.9, 0.1], [0.8, 0.7], [0.6, 0.5]]
    # j=0: 0.9 - 0.6 = 0.3, j=1: 0.7 - 0.5 = 0.2 -> 0.25
    assert average_forgetting(R) == pytest.approx(0.25)
    assert streaming_summary(R)["next_domain"] == pytest.approx(0.1)  # only R[0][1]


def test_missing_entries_are_skipped():
    ragged = [[0.9], [0.7, 0.8]]  # the first evaluation only covered experience 0
    summary = streaming_summary(ragged)
    assert summary["next_domain"] is None and summary["forward_transfer"] is None
    assert summary["backward_transfer"] == pytest.approx(0.7)
    assert summary["average_forgetting"] == pytest.approx(0.2)
    with_none = [[0.9, None], [0.7, float("nan")]]
    assert np.isnan(accuracy_matrix(with_none)[1, 1])
    assert streaming_summary(with_none)["average_accuracy"] == pytest.approx(0.7)
    json.dumps(streaming_summary(with_none), allow_nan=False)


def test_seen_accuracy_curve():
    # row means over j <= i: 0.9, (0.7 + 0.8) / 2, (0.6 + 0.4 + 0.85) / 3
    assert seen_accuracy_curve(R3) == pytest.approx([0.9, 0.75, 1.85 / 3])


def test_rejects_a_3d_array():
    with pytest.raises(ValueError, match="2-D"):
        accuracy_matrix(np.zeros((2, 2, 2)))


def _replay_avalanche_forgetting(R: list[list[float]], samples: int = 4) -> tuple[float, dict]:
    """Drives Avalanche's own Stream/ExperienceForgetting callbacks with fake minibatches.

    Each evaluation of test experience j after training experience i feeds ``samples`` predictions
    of which ``R[i][j] * samples`` are correct, exactly as ``strategy.mb_output`` / ``mb_y`` would.
    """
    from avalanche.evaluation.metrics.forgetting_bwt import (  # noqa: PLC0415
        ExperienceForgetting,
        StreamForgetting,
    )

    stream, per_exp = StreamForgetting(), ExperienceForgetting()
    for i, row in enumerate(R):
        train = SimpleNamespace(experience=SimpleNamespace(current_experience=i))
        for metric in (stream, per_exp):
            metric.before_training_exp(train)
            metric.before_eval(train)
        for j, acc in enumerate(row):
            correct = round(acc * samples)
            y = torch.zeros(samples, dtype=torch.long)
            logits = torch.zeros(samples, 2)
            logits[:correct, 0] = 1.0  # predicted 0 = right
            logits[correct:, 1] = 1.0  # predicted 1 = wrong
            strategy = SimpleNamespace(
                experience=SimpleNamespace(current_experience=j), mb_y=y, mb_output=logits
            )
            for metric in (stream, per_exp):
                metric.before_eval_exp(strategy)
                metric.after_eval_iteration(strategy)
            stream.after_eval_exp(strategy)
            per_exp._check_eval_exp_id()  # after_eval_exp minus the logging of its result
            initial = per_exp.train_exp_id == per_exp.eval_exp_id
            per_exp.update(j, per_exp.metric_result(strategy), initial=initial)
    return stream.result(), per_exp.result()


def test_average_forgetting_matches_avalanche_stream_forgetting():
    R = [[1.0, 0.25, 0.0], [0.75, 1.0, 0.25], [0.5, 0.25, 0.75]]
    avalanche_stream, avalanche_per_exp = _replay_avalanche_forgetting(R)
    # by hand: j=0: 1.0 - 0.5 = 0.5, j=1: 1.0 - 0.25 = 0.75 -> 0.625
    assert avalanche_stream == pytest.approx(0.625)
    assert average_forgetting(R) == pytest.approx(avalanche_stream)
    ours = experience_forgetting(R)
    assert avalanche_per_exp == pytest.approx({j: v for j, v in enumerate(ours) if v is not None})


def test_single_experience_differs_from_avalanche_only_by_none():
    avalanche_stream, _ = _replay_avalanche_forgetting([[0.75]])
    assert avalanche_stream == 0.0  # Avalanche's mean of nothing
    assert average_forgetting([[0.75]]) is None
    assert not math.isnan(streaming_summary([[0.75]])["score"])
