"""Tests of DualTeacherDistillationPlugin (losses on hand-computed tensors, param groups and their
learning rates, two-stage freezing, teacher sharing, old-class feature replay, the old-vs-new offset
calibrated on held-out known images, gradient clipping) and end-to-end runs of the whole NCD pipeline.
"""

import avalanche_ext  # noqa: F401  (stack fixes before avalanche imports torchvision)

# isort: split
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from torch import nn

from avalanche_ext.models import MMClassifier
from avalanche_ext.ncd_state import DiscoveryState, KnownClassStats
from avalanche_ext.plugin_helpers import frozen_copy
from avalanche_ext.registry import PLUGINS
from avalanche_ext.runner import run
from strategies.dual_teacher import (
    DualTeacherDistillationPlugin,
    align_new_rows,
    merge_param_groups,
    split_param_groups,
)
from strategies.lwf import LwFPlugin
from strategies.pseudo_label_clustering import PseudoLabelClusteringPlugin
from tests.test_strategies.test_confidence_gate import (
    blobs,
    discovery_stream,
    gate,
    linear_probe,
    naive,
)

LN3 = math.log(3.0)
KL_3_1 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)  # KL([3/4, 1/4] || [1/2, 1/2]) = 0.130812
REPO = Path(__file__).resolve().parents[2]


class Tiny(nn.Module):
    """backbone (Linear 2->2) + classifier (Linear 2->k), with the MMClassifier-style accessors."""

    def __init__(self, weights: list[float] | None = None, k: int = 2):
        super().__init__()
        self.backbone = nn.Linear(1, 1, bias=False)
        self.fc = nn.Linear(1, k, bias=False)
        with torch.no_grad():
            self.backbone.weight.fill_(1.0)
            if weights is not None:
                self.fc.weight.copy_(torch.tensor(weights).unsqueeze(1))
        self.last_features = None
        self.calls_in_inference_mode: list[bool] = []

    def forward(self, x):
        self.calls_in_inference_mode.append(torch.is_inference_mode_enabled())
        self.last_features = self.backbone(x)
        return self.fc(self.last_features)

    def head_parameters(self):
        return list(self.fc.parameters())


def test_old_class_kd_hand_computed_under_inference_mode():
    plugin = DualTeacherDistillationPlugin(alpha_old=0.5, temperature=1.0, feature_weight=0.0)
    plugin.teacher = frozen_copy(Tiny([LN3, 0.0]))  # teacher logits [ln3, 0]
    plugin.num_old_classes = 2
    student = Tiny([0.0, 0.0, 5.0], k=3)  # grown student: only the 2 old columns are distilled
    x = torch.ones(1, 1)
    strategy = SimpleNamespace(
        mb_x=x, mb_output=student(x), loss=torch.zeros(()), model=student, mbatch=[x, 0, 0]
    )
    plugin.before_backward(strategy)
    assert strategy.loss.item() == pytest.approx(0.5 * KL_3_1, abs=1e-6)
    assert plugin.teacher.calls_in_inference_mode == [True]
    strategy.loss.backward()  # the cloned teacher output is usable for autograd
    # d/dw_j = alpha * (p_s - p_t)_j * feature = 0.5 * [1/2 - 3/4, 1/2 - 1/4, 0]
    assert student.fc.weight.grad.squeeze(1).tolist() == pytest.approx([-0.125, 0.125, 0.0])


def test_feature_and_soft_new_class_terms():
    plugin = DualTeacherDistillationPlugin(
        alpha_old=0.0, alpha_new=2.0, temperature=1.0, feature_weight=3.0, feature_kind="l2"
    )
    teacher = Tiny([0.0, 0.0])
    plugin.teacher = frozen_copy(teacher)
    plugin.num_old_classes = 2
    student = Tiny([0.0, 0.0, 0.0, 0.0], k=4)
    with torch.no_grad():
        student.backbone.weight.fill_(2.0)  # student feature 2, teacher feature 1: l2 = 1
    plugin._soft_rows = torch.tensor([-1, 0, -1])  # sample 1 is pool row 0
    x = torch.ones(1, 1)
    strategy = SimpleNamespace(
        mb_x=x,
        mb_output=student(x),
        loss=torch.zeros(()),
        model=student,
        mbatch=[x, torch.tensor([2]), torch.tensor([1]), torch.tensor([0])],
        ncd=DiscoveryState(pseudo_soft_labels=torch.tensor([[0.75, 0.25]])),
    )
    plugin.before_backward(strategy)
    # 3 * ||2 - 1||^2 + 2 * KL([3/4, 1/4] || softmax([0, 0]))
    assert plugin.last_losses == pytest.approx({"feature": 1.0, "new": KL_3_1}, abs=1e-6)
    assert strategy.loss.item() == pytest.approx(3.0 + 2.0 * KL_3_1, abs=1e-6)


def test_param_groups_split_merge_and_learning_rate_multipliers():
    model = Tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    original = split_param_groups(optimizer, model, backbone_mult=0.5, head_mult=2.0)
    names = [(g["name"], g["lr_mult"], g["lr"]) for g in optimizer.param_groups]
    assert names == [("backbone", 0.5, 0.1), ("head", 2.0, 0.1)]
    plugin = DualTeacherDistillationPlugin(backbone_lr_mult=0.5, head_lr_mult=2.0)
    strategy = SimpleNamespace(optimizer=optimizer)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    before = [p.detach().clone() for p in model.parameters()]
    plugin.before_update(strategy)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.05, 0.2])
    optimizer.step()
    plugin.after_update(strategy)
    assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.1]  # schedulers see the base
    steps = [(b - p.detach()).flatten()[0].item() for b, p in zip(before, model.parameters())]
    assert steps == pytest.approx([0.05, 0.2])  # lr * mult * grad (grad = 1)
    merge_param_groups(optimizer, original)
    assert len(optimizer.param_groups) == 1 and "lr_mult" not in optimizer.param_groups[0]
    assert optimizer.param_groups[0]["params"] == list(model.parameters())


def test_align_new_rows_hand_computed():
    layer = nn.Linear(2, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]]))
        layer.bias.copy_(torch.tensor([0.0, 0.0, 4.0]))
    assert align_new_rows(layer, 2) == pytest.approx(0.5)  # mean old norm 1 / new norm 2
    assert layer.weight[2].tolist() == [1.0, 0.0] and layer.bias[2].item() == 2.0
    assert align_new_rows(layer, 3) == 1.0


def test_old_class_feature_replay_hand_computed():
    """radius 0: replayed features are the prototypes themselves, +2 (class 0) and -2 (class 1).
    Classifier weights [1, -1]: logits [2, -2] / [-2, 2], CE of either = log(1 + e^-4)."""
    plugin = DualTeacherDistillationPlugin(alpha_old=0.0, replay_weight=2.0, replay_batch=6)
    plugin.teacher = frozen_copy(Tiny([0.0, 0.0]))
    plugin._updating = True
    plugin._generator = torch.Generator().manual_seed(0)
    classifier = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        classifier.weight.copy_(torch.tensor([[1.0], [-1.0]]))
    stats = KnownClassStats(
        prototypes=torch.tensor([[2.0], [-2.0]]),
        counts=torch.tensor([5, 5]),
        radius=0.0,
        precision=torch.eye(1),
        bank=torch.ones(1, 1),
        bank_labels=torch.zeros(1, dtype=torch.long),
    )
    x = torch.ones(3, 1)
    strategy = SimpleNamespace(
        mb_x=x,
        mb_output=torch.zeros(3, 2, requires_grad=True),
        loss=torch.zeros(()),
        model=SimpleNamespace(classifier=classifier),
        mbatch=[x, torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long)],
        ncd=DiscoveryState(num_known_classes=2, known_stats=stats),
    )
    plugin.before_backward(strategy)
    ce = math.log(1 + math.exp(-4.0))  # 0.018150
    assert plugin.last_losses == pytest.approx({"replay": ce}, abs=1e-6)
    assert strategy.loss.item() == pytest.approx(2.0 * ce, abs=1e-6)
    strategy.loss.backward()
    assert classifier.weight.grad is not None  # the replay term trains the classifier


def _grown_probe():
    """A linear probe of 3 known classes grown to 5: random rows, zero biases."""
    model = linear_probe(3)
    model.grow(5)
    torch.manual_seed(1)
    with torch.no_grad():
        model.classifier.weight.normal_()
        model.classifier.bias.zero_()
    return model


def test_calibrated_offset_makes_the_target_share_of_held_out_known_images_new():
    """After the offset exactly floor(rate * n) held-out KNOWN images are predicted as a new class."""
    model = _grown_probe()
    images, labels = blobs([0, 1, 2], 7, seed=3)  # 21 held-out known images
    plugin = DualTeacherDistillationPlugin(
        calibrate_new_bias=True,
        calibration_objective="known_false_novel_rate",
        known_false_novel_rate=0.1,
    )
    plugin.num_old_classes = 3
    strategy = SimpleNamespace(
        model=model,
        device="cpu",
        eval_mb_size=64,
        ncd=DiscoveryState(calibration_images=images, calibration_labels=labels),
    )
    bias_before = model.classifier.bias.detach().clone()
    offset = plugin._calibrate_bias(strategy)
    with torch.no_grad():
        predicted = model.eval()(images).argmax(1)
    assert int((predicted >= 3).sum()) == 2  # floor(0.1 * 21)
    after = model.classifier.bias.detach()
    assert torch.equal(after[:3], bias_before[:3])
    assert torch.allclose(after[3:], bias_before[3:] + offset)
    # without held-out images nothing is calibrated
    strategy.ncd.calibration_images = None
    assert plugin._calibrate_bias(strategy) == 0.0


def test_max_grad_norm_clips_update_steps_and_masking_is_off_by_default():
    model = Tiny([0.0, 0.0])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for p in model.parameters():
        p.grad = torch.full_like(p, 3.0)  # global norm 3 * sqrt(3)
    plugin = DualTeacherDistillationPlugin(max_grad_norm=1.0)
    plugin._updating = True
    plugin.before_update(SimpleNamespace(optimizer=optimizer, model=model))
    norm = torch.sqrt(sum((p.grad**2).sum() for p in model.parameters()))
    assert norm.item() == pytest.approx(1.0, rel=1e-4)
    default = DualTeacherDistillationPlugin()
    # clipping is on by default (a small pool and separable replay features blew updates up)
    assert default.mask_old_logits is False and default.max_grad_norm == 1.0
    out = torch.tensor([[1.0, 2.0, 3.0]])
    strategy = SimpleNamespace(mb_output=out, ncd=DiscoveryState(num_known_classes=2))
    default._updating, default.num_old_classes = True, 2
    default.after_forward(strategy)
    assert strategy.mb_output is out  # the criterion sees every logit


# ----------------------------------------------------------------------------- with a strategy
PATTERNS = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(5))


def image_stream():
    """The blob stream as 3x8x8 images (a fixed linear map of the 8-d points)."""
    return discovery_stream(
        per_class=16,
        known_in_discovery=4,
        transform=lambda x: torch.einsum("d,dchw->chw", x, PATTERNS),
    )


def small_cnn() -> MMClassifier:
    torch.manual_seed(0)
    return MMClassifier(
        backbone=dict(type="CifarResNet", depth=8, base_channels=4),
        neck=dict(type="GlobalAveragePooling"),
        head=dict(type="LinearClsHead", num_classes=3, in_channels=16),
    )


class EpochSnapshots(DualTeacherDistillationPlugin):
    """Records backbone/head state and optimizer lrs around every epoch of the discovery update."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.snapshots = []

    def _state(self, strategy):
        model = strategy.model
        backbone = {k: v.clone() for k, v in model.backbone.state_dict().items()}
        return backbone, model.classifier.weight.detach().clone()

    def before_training_epoch(self, strategy, **kwargs):
        super().before_training_epoch(strategy, **kwargs)
        if self._updating:
            self.start = self._state(strategy)
            self.groups = [
                (g.get("name"), g.get("lr_mult")) for g in strategy.optimizer.param_groups
            ]

    def after_training_epoch(self, strategy, **kwargs):
        if self._updating:
            backbone, head = self._state(strategy)
            same = all(torch.equal(backbone[k], self.start[0][k]) for k in backbone)
            self.snapshots.append((same, not torch.equal(head, self.start[1]), self.groups))
        super().after_training_epoch(strategy, **kwargs)


def test_two_stage_schedule_freezes_the_backbone_then_trains_everything():
    plugin = EpochSnapshots(classifier_epochs=1, backbone_lr_mult=0.1, head_lr_mult=1.0)
    strategy = naive(
        small_cnn(),
        [
            gate(trigger_size=2),
            PseudoLabelClusteringPlugin(num_clusters=2, backend="sklearn"),
            plugin,
        ],
        epochs=2,
        lr=0.05,
    )
    for experience in image_stream().benchmark.train_stream:
        strategy.train(experience)
    groups = [("backbone", 0.1), ("head", 1.0)]
    # epoch 0: backbone (weights AND BatchNorm statistics) fixed, head trained; epoch 1: both
    assert plugin.snapshots == [(True, True, groups), (False, True, groups)]
    assert all(p.requires_grad for p in strategy.model.parameters())
    assert len(strategy.optimizer.param_groups) == 1  # merged back for checkpoints


def test_teacher_a_reuses_the_lwf_snapshot():
    class Spy(DualTeacherDistillationPlugin):
        def before_training_exp(self, strategy, **kwargs):
            super().before_training_exp(strategy, **kwargs)
            if self._discovery:
                self.seen = (self.teacher, strategy.ncd.old_model, self.num_old_classes)

    lwf, dual = LwFPlugin(alpha=1.0), Spy(mask_old_logits=True, calibrate_new_bias=True)
    strategy = naive(
        small_cnn(),
        [
            gate(trigger_size=2),
            PseudoLabelClusteringPlugin(num_clusters=2, backend="sklearn"),
            lwf,
            dual,
        ],
        epochs=1,
    )
    for experience in image_stream().benchmark.train_stream:
        strategy.train(experience)
    teacher, shared, num_old = dual.seen
    assert teacher is shared is not None and num_old == 3
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert teacher is lwf.old_model  # one snapshot per experience, shared
    assert dual.last_losses.keys() >= {"old"} and strategy.ncd.new_bias_offset is not None
    assert dual.state_dict() == {"experiences_trained": 2}
    restored = DualTeacherDistillationPlugin()
    restored.load_state_dict(dual.state_dict())
    assert restored.experiences_trained == 2


def test_labeled_experiences_distill_like_lwf_after_the_first():
    plugin = DualTeacherDistillationPlugin(alpha_old=1.0)
    strategy = naive(small_cnn(), [plugin], epochs=1)
    first = image_stream().benchmark.train_stream[0]
    strategy.train(first)
    assert plugin.teacher is None and plugin.last_losses == {}
    strategy.train(first)
    assert plugin.teacher is not None and plugin.last_losses["old"] >= 0.0
    with pytest.raises(ValueError, match="feature_kind"):
        DualTeacherDistillationPlugin(feature_kind="kl")
    assert PLUGINS.get("DualTeacherDistillationPlugin") is DualTeacherDistillationPlugin


# ----------------------------------------------------------------------------- end to end
def synthetic_cfg(plugins: list, work_dir: str) -> Config:
    return Config(
        dict(
            scenario=dict(
                type="SyntheticStream",
                num_classes=6,
                num_experiences=1,
                hidden_novel=2,
                images_per_class=24,
                test_images_per_class=6,
                image_size=8,
                old_fraction=0.2,
                train_transform=[dict(type="ToTensor")],
                eval_transform=[dict(type="ToTensor")],
            ),
            model=dict(
                backbone=dict(type="CifarResNet", depth=8, base_channels=4),
                neck=dict(type="GlobalAveragePooling"),
                head=dict(type="LinearClsHead", num_classes=4, in_channels=16),
            ),
            cl_strategy=dict(
                type="Naive",
                train_mb_size=32,
                eval_mb_size=128,
                train_epochs=2,
                optimizer=dict(type="SGD", lr=0.05, momentum=0.9),
                loss=dict(type="CrossEntropyLoss"),
                plugins=plugins,
            ),
            metrics=[dict(type="accuracy_metrics", experience=True, stream=True)],
            loggers=[],
            work_dir=work_dir,
        )
    )


PIPELINE = [
    dict(
        type="ConfidenceGatedPoolPlugin",
        score="msp",
        threshold="calibrated",
        target_known_recall=0.9,
        calibration_fraction=0.1,
        trigger_size=4,
    ),
    dict(type="PseudoLabelClusteringPlugin", num_clusters=2, backend="sklearn", soft=True),
    dict(
        type="DualTeacherDistillationPlugin",
        alpha_new=0.5,
        feature_weight=0.5,
        backbone_lr_mult=0.1,
        classifier_epochs=1,
        mask_old_logits=True,
        freeze_bn=True,
        calibrate_new_bias=True,
    ),
]


def check_discovery_block(discovery: dict) -> None:
    """The block's layout and the facts that hold whatever the model learned (quality is asserted in
    test_discovery_quality.py, on a config where the answer is known)."""
    assert discovery["convention"] == "frost_task_agnostic"
    primary = discovery["conventions"]["frost_task_agnostic"]
    assert {k: discovery[k] for k in ("old_acc", "new_acc", "all_acc", "hm")} == primary
    assert set(discovery["conventions"]) == {
        "frost_task_agnostic",
        "gcd_v2_all_hungarian",
        "new_ids_only_hungarian",
        "frost_task_aware",
    }
    assert discovery["triggered"] is True and "trigger_size" in discovery["reason"]
    # the base model has no new id: it scores 0 on novel classes under the strict conventions
    assert discovery["floor"]["frost_task_agnostic"]["new_acc"] == 0.0
    assert discovery["floor"]["new_ids_only_hungarian"]["new_acc"] == 0.0
    assert discovery["floor"]["frost_task_aware"]["new_acc"] == 0.0
    # told its side, the base model's old images score what they score anyway
    floor = discovery["floor"]
    assert floor["frost_task_aware"]["old_acc"] == floor["frost_task_agnostic"]["old_acc"]
    assert discovery["routing_auroc"] is not None
    assert discovery["cluster_acc"] is not None and discovery["cluster_chance"] is not None
    gate_block = discovery["gate"]
    assert isinstance(gate_block["threshold"], float) and gate_block["auroc"] is not None
    hist = gate_block["histogram"]
    assert len(hist["bins"]) == len(hist["known"]) + 1 == len(hist["novel"]) + 1
    assert sum(hist["known"]) + sum(hist["novel"]) == discovery["per_experience"][0]["num_samples"]
    assert len(discovery["per_experience"]) == 1


def test_full_pipeline_end_to_end_on_the_synthetic_stream(tmp_path):
    results = run(synthetic_cfg(PIPELINE, str(tmp_path)), device="cpu")
    check_discovery_block(results["discovery"])
    assert (Path(results["run_dir"]) / "results.json").is_file()


@pytest.mark.slow
def test_full_pipeline_end_to_end_on_cifar100_known_novel(tmp_path):
    from avalanche_ext.config import load_config  # noqa: PLC0415

    cfg = load_config(
        REPO / "configs/ncd/ncd_resnet14_cpu-24e_cifar100-80+20lt.py",
        {
            "scenario.train_subset": 12,
            "scenario.test_subset": 3,
            "cl_strategy.train_epochs": 1,
            "model.backbone.depth": 8,
            "cl_strategy.plugins.0.trigger_size": 10,
            "cl_strategy.plugins.1.num_clusters": 5,
            "loggers": [],
        },
    )
    results = run(cfg, device="cpu", work_dir=str(tmp_path))
    check_discovery_block(results["discovery"])
    assert results["scenario"]["novel_classes"] == list(range(80, 100))


def test_routing_estimate_must_be_a_known_one():
    import pytest  # noqa: PLC0415

    from avalanche_ext.plugins.dual_teacher import DualTeacherDistillationPlugin  # noqa: PLC0415

    assert DualTeacherDistillationPlugin().routing_estimate == "mixture"
    with pytest.raises(ValueError, match="routing_estimate"):
        DualTeacherDistillationPlugin(routing_estimate="test_labels")


def test_the_paper_scale_config_is_the_flagship_recipe_on_a_larger_model():
    from avalanche_ext.config import load_config  # noqa: PLC0415

    cpu = load_config(REPO / "configs/ncd/ncd_resnet14_cpu-24e_cifar100-80+20lt.py")
    gpu = load_config(REPO / "configs/ncd/dualteacher_resnet18_100e_cifar100-80+20lt.py")
    cpu_plugins, gpu_plugins = cpu.cl_strategy.plugins, gpu.cl_strategy.plugins
    assert [p["type"] for p in gpu_plugins] == [p["type"] for p in cpu_plugins]
    for mine, theirs in zip(cpu_plugins, gpu_plugins):
        if mine["type"] != "DualTeacherDistillationPlugin":
            assert dict(mine) == dict(theirs), mine["type"]
        else:  # only the last stage's learning rate differs (a 30-epoch update affords more)
            differ = {k for k in {**mine, **theirs} if mine.get(k) != theirs.get(k)}
            assert differ == {"backbone_lr_mult"}
    assert gpu.model.backbone.depth == 18 and gpu.cl_strategy.train_epochs == [100, 30]


def test_old_class_budget_must_be_a_share():
    import pytest  # noqa: PLC0415

    from avalanche_ext.plugins.dual_teacher import DualTeacherDistillationPlugin  # noqa: PLC0415

    with pytest.raises(ValueError, match="max_old_drop"):
        DualTeacherDistillationPlugin(max_old_drop=8)


def test_old_budget_counts_from_the_teachers_accuracy_on_the_held_out_images():
    """The budget objective keeps the held-out old accuracy within max_old_drop of Teacher A's."""
    teacher = linear_probe(3)
    model = _grown_probe()
    images, labels = blobs([0, 1, 2], 10, seed=3)
    with torch.no_grad():  # the teacher is right on every held-out image
        teacher.classifier.weight.copy_(model.classifier.weight[:3])
        teacher.classifier.bias.zero_()
        right = teacher(images).argmax(1) == labels
    plugin = DualTeacherDistillationPlugin(calibration_objective="hm_within_old_budget")
    plugin.num_old_classes, plugin.teacher = 3, teacher.eval()
    strategy = SimpleNamespace(
        model=model,
        device="cpu",
        eval_mb_size=64,
        ncd=DiscoveryState(calibration_images=images, calibration_labels=labels),
    )
    for budget in (0.0, 0.2):
        with torch.no_grad():
            model.classifier.bias.zero_()
        plugin.max_old_drop = budget
        plugin._calibrate_bias(strategy)
        reference = strategy.ncd.operating_point["reference_old_acc"]
        assert reference == pytest.approx(float(right.double().mean()))
        with torch.no_grad():
            predicted = model.eval()(images).argmax(1)
        assert float((predicted == labels).double().mean()) >= reference - budget - 1e-9
