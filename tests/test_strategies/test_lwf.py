"""Tests of LwFPlugin: the loss it adds, task-label independence, the alpha schedule, the teacher
snapshot shared through ``strategy.ncd`` (one per experience), checkpoints without weights.

Hand-computed cases use a one-input linear model; the stream cases run Avalanche's Naive strategy.
"""

import avalanche_ext  # noqa: F401  (stack fixes before avalanche imports torchvision)

# isort: split
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from avalanche.benchmarks import tensors_benchmark
from avalanche.training.plugins import EvaluationPlugin, SupervisedPlugin
from avalanche.training.plugins import LwFPlugin as AvalancheLwFPlugin
from avalanche.training.supervised import Naive
from torch import nn

from avalanche_ext.ncd_state import MASKED_LOGIT, DiscoveryState
from avalanche_ext.plugin_helpers import frozen_copy
from avalanche_ext.registry import PLUGINS
from strategies.lwf import LwFPlugin, trained_columns

LN3 = math.log(3.0)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """Whether two models have identical state dicts (same keys, shapes and values)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa
    )


def linear(weights: list[float]) -> nn.Linear:
    """A 1 -> len(weights) linear layer without bias: logits = x * weights."""
    layer = nn.Linear(1, len(weights), bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weights).unsqueeze(1))
    return layer


def fake_strategy(model: nn.Module, x: torch.Tensor) -> SimpleNamespace:
    return SimpleNamespace(
        model=model,
        mb_x=x,
        device="cpu",
        loss=torch.zeros(()),
        clock=SimpleNamespace(train_exp_counter=0),
        ncd=DiscoveryState(),
    )


def next_experience(plugin: LwFPlugin, strategy: SimpleNamespace) -> None:
    """Ends the current experience and starts the next one (the teacher is snapshotted then)."""
    plugin.after_training_exp(strategy)
    strategy.clock.train_exp_counter += 1
    plugin.before_train_dataset_adaptation(strategy)


def distill_step(plugin: LwFPlugin, strategy: SimpleNamespace, student: nn.Module) -> torch.Tensor:
    """Runs one minibatch of ``student`` through ``before_backward`` and returns the added loss."""
    strategy.model = student
    strategy.mb_output = student(strategy.mb_x)
    strategy.loss = torch.zeros(())
    plugin.before_backward(strategy)
    return strategy.loss


def test_loss_added_matches_hand_computed_value_and_backpropagates():
    x = torch.ones(1, 1)
    plugin = LwFPlugin(alpha=0.5, temperature=1.0)
    strategy = fake_strategy(linear([LN3, 0.0]), x)  # teacher logits [ln3, 0]
    plugin.before_train_dataset_adaptation(strategy)
    assert plugin.old_model is None  # first experience: no teacher
    assert distill_step(plugin, strategy, strategy.model).item() == 0.0
    strategy.model = linear([LN3, 0.0])
    next_experience(plugin, strategy)
    assert strategy.ncd.old_model is plugin.old_model is not None
    assert not plugin.old_model.training
    assert not any(p.requires_grad for p in plugin.old_model.parameters())
    # grown student: logits [0, 0, 5]; only the 2 old columns are distilled
    # KL([3/4, 1/4] || [1/2, 1/2]) = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.130812; T^2 = 1
    # added loss = alpha * 0.130812 = 0.065406
    student = linear([0.0, 0.0, 5.0])
    loss = distill_step(plugin, strategy, student)
    assert plugin.num_old_classes == 2
    assert loss.item() == pytest.approx(0.065406, abs=1e-6)
    assert plugin.last_loss == pytest.approx(0.065406, abs=1e-6)
    loss.backward()  # the teacher's output came from inference mode: must still be usable
    # d/dw_j = alpha * (p_s - p_t)_j * x = 0.5 * [1/2 - 3/4, 1/2 - 1/4, 0] = [-0.125, 0.125, 0]
    assert student.weight.grad.squeeze(1).tolist() == pytest.approx([-0.125, 0.125, 0.0])


def test_t_squared_factor():
    x = torch.ones(1, 1)
    plugin = LwFPlugin(alpha=1.0, temperature=2.0)
    strategy = fake_strategy(linear([LN3, 0.0]), x)
    next_experience(plugin, strategy)
    loss = distill_step(plugin, strategy, linear([0.0, 0.0]))
    # plain KL at T = 2 (no factor) = 0.036341; the plugin adds T^2 * KL = 4 * 0.036341 = 0.145363
    plain_kl = F.kl_div(
        F.log_softmax(torch.zeros(1, 2) / 2, dim=1),
        F.softmax(torch.tensor([[LN3, 0.0]]) / 2, dim=1),
        reduction="batchmean",
    )
    assert plain_kl.item() == pytest.approx(0.036341, abs=1e-6)
    assert loss.item() == pytest.approx(4 * plain_kl.item(), rel=1e-5)


def test_alpha_schedule_per_experience():
    plugin = LwFPlugin(alpha=[0.0, 0.5, 2.0], temperature=1.0)
    assert [plugin.alpha_for(i) for i in range(5)] == [0.0, 0.5, 2.0, 2.0, 2.0]
    x = torch.ones(1, 1)
    strategy = fake_strategy(linear([LN3, 0.0]), x)
    student = linear([0.0, 0.0])
    added = []
    for _ in range(4):  # experiences 1, 2, 3, 4 after a snapshot of the same teacher
        strategy.model = linear([LN3, 0.0])
        next_experience(plugin, strategy)
        added.append(distill_step(plugin, strategy, student).item())
    # KL = 0.130812 (T = 1) times alpha_1..4 = 0.5, 2, 2 (past the list: last value), 2
    assert added == pytest.approx([0.5 * 0.130812] + [2 * 0.130812] * 3, abs=1e-6)
    with pytest.raises(ValueError, match="empty"):
        LwFPlugin(alpha=[])


def test_one_snapshot_per_experience_shared_with_other_plugins():
    model = linear([LN3, 0.0])
    strategy = fake_strategy(model, torch.ones(1, 1))
    strategy.clock.train_exp_counter = 1
    shared = strategy.ncd.teacher(strategy, frozen_copy)  # e.g. made by the dual-teacher plugin
    plugin = LwFPlugin()
    plugin.experiences_trained = 1
    plugin.before_train_dataset_adaptation(strategy)
    assert plugin.old_model is shared  # same experience: no second copy
    with torch.no_grad():
        model.weight.add_(1.0)  # the experience trains the model further
    next_experience(plugin, strategy)
    assert plugin.old_model is not shared and strategy.ncd.old_model is plugin.old_model
    assert same_weights(plugin.old_model, model) and not same_weights(shared, model)


def test_frozen_copy_handles_tensors_cached_by_forward():
    class Cached(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)
            self.last_features = None

        def forward(self, x):
            self.last_features = x * 2 + self.fc.weight.sum()  # part of the autograd graph
            return self.fc(x)

    model = Cached()
    model(torch.ones(1, 2))
    teacher = frozen_copy(model)
    assert teacher.last_features.grad_fn is None and model.last_features.grad_fn is not None


def test_state_dict_has_no_weights_and_a_resume_snapshots_the_restored_model():
    x = torch.ones(1, 1)
    plugin = LwFPlugin(alpha=[1.0, 0.25], temperature=1.0)
    strategy = fake_strategy(linear([LN3, 0.0]), x)
    next_experience(plugin, strategy)
    distill_step(plugin, strategy, linear([0.0, 0.0]))
    state = plugin.state_dict()
    assert state == {"num_old_classes": 2, "experiences_trained": 1}

    restored = LwFPlugin(alpha=[1.0, 0.25], temperature=1.0)
    restored.load_state_dict({**state, "old_model": "ignored (older checkpoints)"})
    resumed = fake_strategy(linear([LN3, 0.0]), x)  # the model as the checkpoint restored it
    resumed.clock.train_exp_counter = 1
    restored.before_train_dataset_adaptation(resumed)
    assert same_weights(restored.old_model, resumed.model)
    assert resumed.ncd.old_model is restored.old_model
    # alpha_1 = 0.25: 0.25 * 0.130812 = 0.032703
    assert distill_step(restored, resumed, linear([0.0, 0.0])).item() == pytest.approx(
        0.032703, abs=1e-6
    )


def test_registered_names():
    assert PLUGINS.get("LwFPlugin") is LwFPlugin
    assert PLUGINS.get("AvalancheLwFPlugin") is AvalancheLwFPlugin


class RecordAddedLoss(SupervisedPlugin):
    """Wraps a plugin and records how much each of its before_backward calls adds to the loss."""

    def __init__(self, inner: SupervisedPlugin):
        super().__init__()
        self.inner = inner
        self.added: dict[int, list[float]] = {}

    def before_backward(self, strategy, **kwargs):
        before = float(strategy.loss)
        self.inner.before_backward(strategy, **kwargs)
        exp = strategy.experience.current_experience
        self.added.setdefault(exp, []).append(float(strategy.loss) - before)

    def before_train_dataset_adaptation(self, strategy, **kwargs):
        self.inner.before_train_dataset_adaptation(strategy, **kwargs)

    def before_training_exp(self, strategy, **kwargs):
        self.inner.before_training_exp(strategy, **kwargs)

    def after_training_exp(self, strategy, **kwargs):
        self.inner.after_training_exp(strategy, **kwargs)


def run_both_plugins(task_labels: list[int]) -> tuple[RecordAddedLoss, RecordAddedLoss]:
    """Two experiences (classes {0, 1} then {2, 3}) with the given task labels, one single-head
    model, both plugins on the same strategy (same model, same minibatches)."""
    torch.manual_seed(0)
    xs = [torch.randn(16, 4) for _ in range(2)]
    ys = [torch.tensor([0, 1] * 8), torch.tensor([2, 3] * 8)]
    benchmark = tensors_benchmark(
        train_tensors=list(zip(xs, ys)), test_tensors=list(zip(xs, ys)), task_labels=task_labels
    )
    ours = RecordAddedLoss(LwFPlugin(alpha=1.0, temperature=2.0))
    theirs = RecordAddedLoss(AvalancheLwFPlugin(alpha=1.0, temperature=2))
    strategy = Naive(
        model=nn.Sequential(nn.Linear(4, 4)),
        optimizer=torch.optim.SGD([torch.zeros(1)], lr=0.0),  # replaced below
        train_mb_size=4,
        train_epochs=1,
        device="cpu",
        plugins=[ours, theirs],
        evaluator=EvaluationPlugin(loggers=[]),
    )
    strategy.optimizer = torch.optim.SGD(strategy.model.parameters(), lr=0.1)
    for experience in benchmark.train_stream:
        strategy.train(experience, eval_streams=[])
    return ours, theirs


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_distills_whatever_the_task_labels_unlike_avalanche_lwf():
    ours, theirs = run_both_plugins(task_labels=[1, 2])
    assert ours.added[0] == [0.0] * 4 and theirs.added[0] == [0.0] * 4  # first experience
    # Avalanche's plugin keys old classes by task label (old: task 1) but reads the single-head
    # output as task 0: nothing is distilled. Ours distills the 4 old logits. (The first
    # minibatch of experience 1 adds ~0 for both: the student still equals the teacher.)
    assert theirs.added[1] == [0.0] * 4
    assert ours.added[1][0] == pytest.approx(0.0, abs=1e-6)
    assert all(value > 1e-5 for value in ours.added[1][1:])
    # Control: with task label 0 everywhere Avalanche's plugin does distill.
    _, theirs_task0 = run_both_plugins(task_labels=[0, 0])
    assert all(value > 0 for value in theirs_task0.added[1][1:])


def test_evaluation_does_not_grow_the_head_and_the_teacher_has_the_trained_rows(synthetic_cfg):
    """Evaluating the whole test stream after each experience leaves the head at the classes trained
    so far (growing it would leak the number of classes), so each teacher has exactly those."""
    from avalanche_ext.builders import build_model, build_scenario, build_strategy
    from avalanche_ext.recorder import EvalLogitPadding

    scenario = build_scenario(synthetic_cfg.scenario)
    model = build_model(synthetic_cfg.model)
    lwf = LwFPlugin(alpha=1.0, temperature=2.0)
    padding = EvalLogitPadding(scenario.num_classes)
    strategy = build_strategy(synthetic_cfg.cl_strategy, model, None, "cpu", plugins=[lwf, padding])
    seen = []
    for k, exp in enumerate(scenario.benchmark.train_stream):
        strategy.train(exp)
        seen.append(
            (lwf.num_old_classes, None if lwf.old_model is None else lwf.old_model.num_classes)
        )
        strategy.eval(scenario.benchmark.test_stream)
        assert model.num_classes == 2 * (k + 1)
    assert seen == [(0, None), (2, 2), (4, 4)]
    assert bool(lwf.old_model.active.all())


def test_rows_never_trained_are_not_distilled():
    """A head grown with inactive rows (never trained): only the trained columns are distilled."""
    from tests.test_strategies.test_confidence_gate import linear_probe

    model = linear_probe(2)
    model.grow(4, activate=False)
    teacher = frozen_copy(model)
    assert trained_columns(teacher, 4).tolist() == [0, 1]
    assert trained_columns(frozen_copy(linear_probe(2)), 2) is None


def test_mask_old_logits_hides_the_teachers_classes_from_the_criterion_only():
    lwf = LwFPlugin(alpha=1.0, temperature=1.0, mask_old_logits=True)
    lwf.old_model = frozen_copy(linear([1.0, 2.0]))
    lwf.num_old_classes = 2
    student = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    strategy = SimpleNamespace(mb_output=student, mb_x=torch.ones(1, 1), loss=torch.zeros(()))
    lwf.after_forward(strategy)
    assert strategy.mb_output[0, :2].tolist() == [MASKED_LOGIT, MASKED_LOGIT]
    assert strategy.mb_output[0, 2].item() == 3.0
    lwf.before_backward(strategy)
    # KD still sees the real student logits [1, 2] against the teacher's [1, 2]: zero loss
    assert lwf.last_loss == pytest.approx(0.0, abs=1e-7)


def test_align_new_rows_leaves_rows_grown_for_evaluation_alone():
    from avalanche_ext.models.classifier import align_new_rows

    layer = nn.Linear(2, 4)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 5.0]]))
        layer.bias.zero_()
    # old rows 0-1 (norm 1), new row 2 (norm 2), row 3 never trained
    assert align_new_rows(layer, num_old=2, num_new=1) == pytest.approx(0.5)
    assert layer.weight[2].tolist() == [1.0, 0.0]
    assert layer.weight[3].tolist() == [0.0, 5.0]
