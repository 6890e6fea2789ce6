"""The typed contract of the discovery plugins (avalanche_ext/ncd_state.py): one dataclass on the
strategy instead of untyped attributes, one teacher snapshot per experience, one mask constant, and
the double-masking trap (two plugins masking the criterion's logits) closed.
"""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import avalanche_ext  # noqa: F401  (stack fixes first)
from avalanche_ext.models import MMClassifier
from avalanche_ext.ncd_state import MASKED_LOGIT, DiscoveryState, NovelPool, discovery_state
from avalanche_ext.plugin_helpers import frozen_copy
from strategies.dual_teacher import DualTeacherDistillationPlugin
from strategies.lwf import LwFPlugin

LN3 = math.log(3.0)
KL_3_1 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)  # KL([3/4, 1/4] || [1/2, 1/2])


def linear(weights: list[float]) -> nn.Linear:
    layer = nn.Linear(1, len(weights), bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weights).unsqueeze(1))
    return layer


def test_a_misspelled_field_raises_when_read():
    state = DiscoveryState()
    assert state.pseudo_labels is None
    with pytest.raises(AttributeError):
        state.psuedo_labels  # noqa: B018  (the typo the old getattr probes swallowed)
    with pytest.raises(TypeError):
        DiscoveryState(psuedo_labels=torch.zeros(1))  # the constructor checks names too


def test_a_misspelled_field_raises_when_written():
    """A typo on WRITE is the dangerous one: the reader then sees the default (None) and the feature
    is silently off. A slotted dataclass refuses unknown attributes."""
    state = DiscoveryState()
    with pytest.raises(AttributeError):
        state.psuedo_labels = torch.zeros(1)


def test_discovery_state_is_attached_once_and_typed():
    model = MMClassifier(head=dict(type="LinearClsHead", num_classes=5, in_channels=4))
    strategy = SimpleNamespace(model=model)
    state = discovery_state(strategy)
    assert strategy.ncd is state and state.num_known_classes == 5  # sized by the head
    assert discovery_state(strategy) is state
    strategy.ncd = {"num_known_classes": 5}  # a dict is not the contract
    with pytest.raises(TypeError, match="DiscoveryState"):
        discovery_state(strategy)


def test_one_mask_constant():
    assert MASKED_LOGIT == -1e4 and MMClassifier.MASK_VALUE == MASKED_LOGIT
    assert torch.tensor(MASKED_LOGIT, dtype=torch.float16).isfinite()
    assert torch.exp(torch.tensor(MASKED_LOGIT)) == 0


def test_one_teacher_snapshot_per_experience():
    model = linear([1.0, 2.0])
    strategy = SimpleNamespace(model=model, clock=SimpleNamespace(train_exp_counter=1))
    state = DiscoveryState()
    first = state.teacher(strategy, frozen_copy)
    assert state.teacher(strategy, frozen_copy) is first and state.old_model is first
    with torch.no_grad():
        model.weight.add_(1.0)
    strategy.clock.train_exp_counter = 2
    second = state.teacher(strategy, frozen_copy)
    assert second is not first and torch.equal(second.weight, model.weight)


def _both_masking(order: str):
    """LwF and the dual teacher, both with mask_old_logits, on one discovery minibatch.

    Teacher logits [ln3, 0]; the student's real logits [ln3, 0, 5] (2 old classes + 1 new): the
    student agrees with the teacher on the old classes, so the old-class KD is exactly 0. Had a
    plugin distilled the other's masked output ([-1e4, -1e4]: softmax [1/2, 1/2]), it would be
    KL([3/4, 1/4] || [1/2, 1/2]) = 0.1308.
    """
    teacher = frozen_copy(linear([LN3, 0.0]))
    lwf = LwFPlugin(alpha=1.0, temperature=1.0, mask_old_logits=True)
    lwf.old_model, lwf.num_old_classes = teacher, 2
    dual = DualTeacherDistillationPlugin(
        alpha_old=1.0, temperature=1.0, mask_old_logits=True, replay_weight=0.0
    )
    dual.teacher, dual.num_old_classes, dual._updating = teacher, 2, True
    student = linear([LN3, 0.0, 5.0])
    x = torch.ones(1, 1)
    strategy = SimpleNamespace(
        model=student,
        mb_x=x,
        mbatch=[x, torch.tensor([2]), torch.tensor([0])],
        loss=torch.zeros(()),
        ncd=DiscoveryState(num_known_classes=2),
    )
    plugins = [lwf, dual] if order == "lwf_first" else [dual, lwf]
    for p in plugins:
        p.before_forward(strategy)
    strategy.mb_output = student(x)
    real = strategy.mb_output
    for p in plugins:
        p.after_forward(strategy)
    for p in plugins:
        p.before_backward(strategy)
    return strategy, real, lwf, dual


@pytest.mark.parametrize("order", ["lwf_first", "dual_first"])
def test_double_masking_distillation_sees_the_real_logits(order):
    strategy, real, lwf, dual = _both_masking(order)
    # the criterion sees the old classes masked...
    assert strategy.mb_output[0, :2].tolist() == [MASKED_LOGIT, MASKED_LOGIT]
    assert strategy.mb_output[0, 2].item() == 5.0
    # ...both distillation terms see the real logits, never the other plugin's constants
    assert strategy.ncd.unmasked_logits is real
    assert lwf.last_loss == pytest.approx(0.0, abs=1e-6)
    assert dual.last_losses["old"] == pytest.approx(0.0, abs=1e-6)
    assert KL_3_1 > 0.1  # what a distillation of the masked output would have added


def test_the_next_minibatch_forgets_the_saved_logits():
    strategy, real, lwf, dual = _both_masking("lwf_first")
    lwf.before_forward(strategy)
    assert strategy.ncd.unmasked_logits is None
    strategy.mb_output = torch.tensor([[7.0, 8.0, 9.0]])
    assert strategy.ncd.student_logits(strategy) is strategy.mb_output  # no stale logits


def test_state_round_trips_and_facts_for_the_runner():
    pool = NovelPool(
        indices=torch.tensor([1, 3]),
        scores=torch.tensor([0.9, 0.8]),
        features=None,
        experience_index=1,
        all_scores=torch.tensor([0.1, 0.9, 0.2, 0.8]),
        threshold=0.5,
        triggered=True,
        reason="2 pooled >= trigger_size 2",
    )
    state = DiscoveryState(
        num_known_classes=3,
        pool=pool,
        pseudo_labels=torch.tensor([-1, 3, -1, 4]),
        num_discovered=2,
        calibration_images=torch.ones(2, 1),
        calibration_labels=torch.tensor([0, 2]),
        new_bias_offset=-0.5,
        triggered=True,
        reason=pool.reason,
    )
    facts = state.facts()
    assert facts["triggered"] is True and facts["reason"] == "2 pooled >= trigger_size 2"
    assert facts["pool_indices"].tolist() == [1, 3] and facts["threshold"] == 0.5
    assert facts["pseudo_labels"].tolist() == [-1, 3, -1, 4] and "cluster_of_all" not in facts
    restored = DiscoveryState()
    restored.load_state_dict(state.state_dict())
    assert restored.num_known_classes == 3 and restored.num_discovered == 2
    assert torch.equal(restored.calibration_labels, state.calibration_labels)
    assert restored.new_bias_offset == -0.5
    assert "old_model" not in state.state_dict()  # no weights: re-snapshotted per experience
    state.start_experience()
    assert state.pool is None and state.pseudo_labels is None
    assert state.num_known_classes == 3  # kept across experiences
