"""Model Doctor's maths: channel scores, kernel sifting, mask combination, image selection and the
channel loss, on hand-computed tensors."""

import avalanche_ext  # noqa: F401  (stack fixes first)

# isort: split
import pytest
import torch

from avalanche_ext.losses.model_doctor import (
    channel_constraint_loss,
    channel_scores,
    class_channel_masks,
    combine_masks,
    high_confidence_correct,
)

# one image, two channels, two positions
ACT = torch.tensor([[[1.0, -1.0], [-2.0, 3.0]]])
GRAD = torch.tensor([[[0.5, -1.5], [2.0, -4.0]]])


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        ("gradient", [1.0, 3.0]),  # mean |g|
        ("positive_gradient", [0.25, 1.0]),  # mean max(g, 0)
        ("positive_activation_gradient", [0.25, 2.0]),  # mean |g| where a > 0
        ("positive_activation", [0.5, 1.5]),  # mean max(a, 0)
    ],
)
def test_channel_scores_hand_computed(score, expected):
    assert channel_scores(ACT, GRAD, score)[0].tolist() == pytest.approx(expected)


def test_fully_connected_scores_have_no_spatial_mean_and_unknown_score_is_named():
    assert channel_scores(
        torch.ones(1, 3), torch.tensor([[1.0, -2.0, 0.0]]), "gradient"
    ).tolist() == [[1.0, 2.0, 0.0]]
    with pytest.raises(KeyError, match="gradiant"):
        channel_scores(ACT, GRAD, "gradiant")


def test_sifting_keeps_channels_above_the_class_mean():
    scores = torch.tensor([[4.0, 0.0, 2.0, 0.0], [2.0, 0.0, 2.0, 0.0], [0.0, 1.0, 0.0, 5.0]])
    masks, has = class_channel_masks(scores, torch.tensor([0, 0, 1]), num_classes=3)
    # class 0: channel means [3, 0, 2, 0], mean 1.25 -> channels 0 and 2; class 1: mean 1.5 -> 3
    assert masks.tolist() == [
        [True, False, True, False],
        [False, False, False, True],
        [True, True, True, True],  # no image: nothing constrained
    ]
    assert has.tolist() == [True, True, False]


def test_combine_masks():
    a = torch.tensor([[True, True, False]])
    b = torch.tensor([[True, False, False]])
    assert combine_masks([a, b], "intersection").tolist() == [[True, False, False]]
    assert combine_masks([a, b], "union").tolist() == [[True, True, False]]
    with pytest.raises(ValueError, match="combine"):
        combine_masks([a, b], "xor")


def test_high_confidence_correct_selection():
    logits = torch.tensor([[5.0, 0.0], [0.1, 0.0], [0.0, 5.0], [5.0, 0.0], [0.0, 3.0], [9.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1, 1, 0])
    # 1: correct but p ~ 0.52; 3: wrong; the rest confident and correct
    assert high_confidence_correct(logits, labels, 0.9).tolist() == [0, 2, 4, 5]
    # at most one per class: the most confident (5 for class 0, 2 for class 1)
    assert high_confidence_correct(logits, labels, 0.9, max_per_class=1).tolist() == [2, 5]


def test_channel_loss_hand_computed_abs_and_positive():
    grad = torch.tensor(
        [[[1.0, 3.0], [-2.0, -2.0], [4.0, 0.0]], [[-1.0, -1.0], [6.0, 2.0], [0.0, 0.0]]]
    )
    labels = torch.tensor([0, 1])
    masks = torch.tensor([[True, False, False], [False, True, True]])
    # image 0 (class 0): irrelevant channels 1, 2 -> |-2| + |2| = 4; image 1: channel 0 -> 1
    assert channel_constraint_loss(grad, labels, masks, "abs").item() == pytest.approx(2.5)
    # positive: image 0 -> 0 + 2 = 2; image 1 -> 0
    assert channel_constraint_loss(grad, labels, masks, "positive").item() == pytest.approx(1.0)
    assert channel_constraint_loss(grad, labels, torch.ones(2, 3, dtype=torch.bool)).item() == 0.0
    # positive on the irrelevant channels, negative on all: image 0 -> (0 + 2) + |-2| = 4 (its
    # relevant channel 0 has g = 2 > 0, unpenalised); image 1 -> 0 + |-1| = 1 -> mean 2.5
    value = channel_constraint_loss(grad, labels, masks, "positive_all_negative")
    assert value.item() == pytest.approx(2.5)
    # a relevant channel's negative gradient is penalised too: all-relevant masks still cost 1.5
    every = torch.ones(2, 3, dtype=torch.bool)
    assert channel_constraint_loss(grad, labels, every, "positive_all_negative").item() == (
        pytest.approx(1.5)
    )
    with pytest.raises(ValueError, match="constraint"):
        channel_constraint_loss(grad, labels, masks, "negative")
