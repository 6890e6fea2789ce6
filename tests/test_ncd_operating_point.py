"""The old-vs-new operating point: objectives chosen without test labels, and the trade-off curve."""

import numpy as np
import pytest
import torch

from avalanche_ext.operating_point import (
    CalibrationData,
    calibrate_offset,
    class_balanced_weights,
    tradeoff_curve,
)


def test_class_balanced_weights_give_each_class_the_same_total():
    w = class_balanced_weights(torch.tensor([0, 0, 0, 1]))
    assert w.tolist() == pytest.approx([1 / 6, 1 / 6, 1 / 6, 1 / 2])


def _data(known_margins, correct, labels, novel_margins, confidence=1.0):
    return CalibrationData(
        known_margins=torch.tensor(known_margins, dtype=torch.float32),
        known_old_correct=torch.tensor(correct),
        known_labels=torch.tensor(labels),
        novel_margins=torch.tensor(novel_margins, dtype=torch.float32),
        novel_confidence=confidence,
    )


def test_rate_objective_is_class_balanced_on_a_long_tailed_hold_out():
    # class 0 (head): 9 images with margins -9..-1; class 1 (tail): one image at margin 0.5
    margins = [-9.0, -8, -7, -6, -5, -4, -3, -2, -1, 0.5]
    data = _data(margins, [True] * 10, [0] * 9 + [1], [1.0])
    b = calibrate_offset(data, "known_false_novel_rate", rate=0.5)
    new = torch.tensor(margins) + b > 0
    # half of the class-balanced mass: the tail image alone (weight 1/2), not 5 head images
    assert new.tolist() == [False] * 9 + [True]


def test_hm_objective_routes_separable_novel_images_to_new_and_keeps_known_ones():
    # known images sit below -1, pooled novel ones above +1: any offset in (-1, 1) is perfect
    data = _data([-3.0, -2.0, -1.5, -1.2], [True] * 4, [0, 1, 2, 3], [1.2, 2.0, 3.0])
    b = calibrate_offset(data, "hm")
    assert all(m + b <= 0 for m in (-3.0, -2.0, -1.5, -1.2))
    assert all(m + b > 0 for m in (1.2, 2.0, 3.0))


def test_hm_objective_moves_the_cut_against_a_biased_head():
    # a head biased to old classes: every pooled novel image has a negative margin
    data = _data([-5.0, -4.0, -4.5, -6.0], [True] * 4, [0, 1, 2, 3], [-2.0, -1.5, -1.0])
    b = calibrate_offset(data, "hm")
    assert b > 1.0  # the novel images now get new ids ...
    assert all(m + b <= 0 for m in (-5.0, -4.0, -4.5, -6.0))  # ... and known ones stay


def test_unknown_objective_is_refused_and_no_hold_out_means_no_offset():
    with pytest.raises(ValueError, match="calibration_objective"):
        calibrate_offset(_data([0.0], [True], [0], [0.0]), "best_test_accuracy")
    assert calibrate_offset(_data([], [], [], [1.0]), "hm") == 0.0


def test_tradeoff_curve_of_a_perfect_head_has_area_one():
    # 2 known classes, 2 new columns mapped to classes 2 and 3
    logits = np.array([[5, 0, -1, -1], [0, 5, -1, -1], [-1, -1, 5, 0], [-1, -1, 0, 5]], dtype=float)
    y = np.array([0, 1, 2, 3])
    curve = tradeoff_curve(y, logits, 2, {2: 2, 3: 3})
    assert curve["auc"] == pytest.approx(1.0)
    assert max(curve["old_acc"]) == 1.0 and max(curve["new_acc"]) == 1.0
    # the ends: nothing new (old 1, new 0) and everything new (old 0, new 1)
    assert (curve["old_acc"][0], curve["new_acc"][0]) == (1.0, 0.0)
    assert (curve["old_acc"][-1], curve["new_acc"][-1]) == (0.0, 1.0)


def test_tradeoff_curve_counts_wrongly_mapped_new_ids_as_errors():
    logits = np.array([[5, 0, -1, -1], [-1, -1, 5, 0]], dtype=float)
    curve = tradeoff_curve(np.array([0, 3]), logits, 2, {2: 2, 3: 3})
    assert max(curve["new_acc"]) == 0.0  # the novel image goes to id 2, mapped to class 2
    assert curve["auc"] == pytest.approx(0.0)


def test_known_share_recovers_the_mixture_proportion_of_separable_margins():
    from avalanche_ext.operating_point import known_share

    known = torch.linspace(-5, -1, 400)  # held-out known images
    mixed = torch.cat([torch.linspace(-5, -1, 100), torch.linspace(1, 5, 300)])  # 25 % known
    assert known_share(known, mixed) == pytest.approx(0.25, abs=0.01)
    # class-balanced weights: the tail class's (one image) margins count as much as the head's
    labels = torch.tensor([0] * 399 + [1])
    from avalanche_ext.operating_point import class_balanced_weights as cbw

    assert 0.0 <= known_share(known, mixed, cbw(labels)) <= 1.0
    assert known_share(torch.empty(0), mixed) == 0.0


def test_routing_is_estimated_on_the_whole_discovery_mixture_not_the_easy_pool():
    # the pool holds only the clearest novel images (margins >= 2); most novel images sit near 0
    from avalanche_ext.operating_point import estimate_at

    known = [-3.0, -2.5, -2.0, -1.5] * 10
    novel_all = [2.0, 3.0] * 5 + [-0.5, 0.2, 0.4, -0.2] * 10  # 50 novel images, 10 of them pooled
    mixed = known[:10] + novel_all  # 10 known images mixed in
    pooled_only = _data(known, [True] * 40, list(range(4)) * 10, [2.0, 3.0] * 5)
    whole = CalibrationData(**{**pooled_only.__dict__, "discovery_margins": torch.tensor(mixed)})
    at = 1.0  # routes margins > -1: every novel image, no known one
    assert estimate_at(pooled_only, at)["new_acc"] == pytest.approx(1.0)
    assert estimate_at(whole, at)["new_acc"] == pytest.approx(1.0)
    at = -1.0  # routes margins > 1: the 10 pooled-like novel images of 50
    assert estimate_at(pooled_only, at)["new_acc"] == pytest.approx(1.0)  # the pool's blind spot
    assert estimate_at(whole, at)["new_acc"] == pytest.approx(10 / 50)
    # the HM objective then takes the cut that routes every novel image
    assert 0.5 < calibrate_offset(whole, "hm") <= 1.5


def _budget_data(reference):
    # 10 known images (one class each), all right on the old classes, margins -9..0; 10 pooled
    # novel images with margins -4.5..0: every step to the right routes one more novel image and,
    # past -4, a known one too
    known = [-9.0, -8, -7, -6, -5, -4, -3, -2, -1, 0.0]
    data = _data(known, [True] * 10, list(range(10)), [-4.5 + 0.5 * i for i in range(10)])
    data.reference_old_acc = reference
    return data, torch.tensor(known)


def test_old_budget_objective_keeps_the_held_out_old_accuracy_within_the_budget():
    data, known = _budget_data(reference=1.0)
    free = calibrate_offset(data, "hm")
    assert (known + free > 0).double().mean() > 0.2  # the plain HM cut gives up > 2 known images
    for budget in (0.0, 0.1, 0.2):
        b = calibrate_offset(data, "hm_within_old_budget", max_old_drop=budget)
        kept = float((known + b <= 0).double().mean())
        assert kept >= 1.0 - budget - 1e-9
        # ... and it routes as many novel images as the budget allows: one more step breaks it
        assert float((known + b + 1.0 <= 0).double().mean()) < 1.0 - budget


def test_old_budget_is_counted_from_the_base_model_and_falls_back_to_the_safest_cut():
    # the updated model already lost 20 points against its base: a 10-point budget cannot be kept,
    # so the cut that keeps the most known images is taken
    data, known = _budget_data(reference=1.0)
    data.known_old_correct = torch.tensor([True] * 8 + [False] * 2)
    b = calibrate_offset(data, "hm_within_old_budget", max_old_drop=0.1)
    assert bool((known[:8] + b <= 0).all())
    # without a reference the budget counts from the updated model's own old accuracy
    data.reference_old_acc = None
    b = calibrate_offset(data, "hm_within_old_budget", max_old_drop=0.1)
    assert float(((known + b <= 0) & data.known_old_correct).double().mean()) >= 0.7 - 1e-9


def test_an_objective_receives_only_the_options_it_names():
    data, _ = _budget_data(reference=1.0)
    hm = calibrate_offset(data, "hm", rate=0.3, max_old_drop=0.1)
    assert hm == calibrate_offset(data, "hm")
