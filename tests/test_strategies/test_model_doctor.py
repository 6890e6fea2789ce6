"""Model Doctor: kernel sifting on a network whose classes are carried by known channels, the
constrained fine-tuning on held-out images, the plugin's checks and an end-to-end run whose
sifting is spied on (training images only)."""

import avalanche_ext  # noqa: F401  (stack fixes first)

# isort: split
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import avalanche_ext.model_doctor as md
from avalanche_ext.errors import ConfigError
from avalanche_ext.model_doctor import (
    constrained_finetune,
    irrelevant_gradient_mass,
    resolve_layers,
    sift_kernels,
)
from avalanche_ext.plugins.model_doctor import ModelDoctorPlugin

CARRIERS = {0: {0, 1, 5}, 1: {2, 3}, 2: {4, 5, 6}, 3: {7, 0}}


class KnownChannels(nn.Module):
    """``feat`` (1x1 identity conv, 8 channels) -> ReLU -> mean -> ``fc``: class c's logit is the
    sum of its carrier channels, so only they can carry its score."""

    def __init__(self):
        super().__init__()
        self.feat = nn.Conv2d(8, 8, 1, bias=False)
        self.fc = nn.Linear(8, 4, bias=False)
        with torch.no_grad():
            self.feat.weight.copy_(torch.eye(8)[:, :, None, None])
            self.fc.weight.zero_()
            for c, channels in CARRIERS.items():
                self.fc.weight[c, sorted(channels)] = 1.0

    def forward(self, x):
        return self.fc(F.relu(self.feat(x)).mean((2, 3)))


def carrier_images(labels: list[int], pattern_of: list[int] | None = None, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(len(labels), 8, 4, 4, generator=gen) * 1.3 - 1.0  # background in [-1, 0.3)
    for i, c in enumerate(pattern_of or labels):
        x[i, sorted(CARRIERS[c])] = 4.0 + 0.1 * torch.randn(len(CARRIERS[c]), 4, 4, generator=gen)
    return x, torch.tensor(labels)


@pytest.mark.parametrize(
    "scores",
    [
        ["gradient"],
        ["positive_gradient"],
        ["positive_activation_gradient"],
        ["positive_activation"],
        ["gradient", "positive_activation"],
    ],
)
def test_sifting_finds_exactly_the_carrier_channels(scores):
    model = KnownChannels()
    x, y = carrier_images([c for c in range(4) for _ in range(6)])
    # three images labelled 0 that look like class 1: wrong predictions, never sifted
    bad_x, bad_y = carrier_images([0, 0, 0], pattern_of=[1, 1, 1], seed=1)
    batches = [(x[:12], y[:12]), (torch.cat([x[12:], bad_x]), torch.cat([y[12:], bad_y]))]
    found = sift_kernels(model, batches, resolve_layers(model, ["feat"]), 4, scores=scores)
    got = {c: set(torch.nonzero(found.masks["feat"][c]).squeeze(1).tolist()) for c in range(4)}
    assert got == CARRIERS
    assert found.images_per_class.tolist() == [6, 6, 6, 6]


def test_sifting_union_and_intersection_of_scores_on_the_same_network():
    model = KnownChannels()
    x, y = carrier_images([c for c in range(4) for _ in range(3)])
    layers = resolve_layers(model, ["feat"])
    for combine in ("union", "intersection"):
        found = sift_kernels(
            model, [(x, y)], layers, 4, ["positive_gradient", "positive_activation"], combine
        )
        assert found.masks["feat"].sum().item() == sum(len(s) for s in CARRIERS.values())


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.feat = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(F.relu(self.feat(F.relu(self.stem(x)))).mean((2, 3)))


def blobs(n_per_class: int, seed: int):
    gen = torch.Generator().manual_seed(100)  # class patterns are fixed
    means = torch.randn(3, 3, 6, 6, generator=gen)
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(3).repeat_interleave(n_per_class)
    return means[y] + 0.5 * torch.randn(len(y), 3, 6, 6, generator=gen), y


def test_constrained_finetuning_lowers_irrelevant_gradient_mass_on_held_out_images():
    torch.manual_seed(0)
    model = SmallNet()
    train_x, train_y = blobs(40, seed=1)
    held_x, held_y = blobs(30, seed=2)

    def epoch_batches(epoch):
        order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(epoch))
        return [(train_x[i], train_y[i]) for i in order.split(20)]

    layers = resolve_layers(model, ["feat"])
    constrained_finetune(
        model, epoch_batches, F.cross_entropy, layers, {}, epochs=8, lr=0.2, loss_scale=0.0
    )
    found = sift_kernels(model, [(train_x, train_y)], layers, 3, confidence=0.5)
    held = [(held_x, held_y)]
    before = irrelevant_gradient_mass(model, held, layers, found.masks)
    after = {}
    for scale in (0.0, 5.0):
        tuned = copy.deepcopy(model)
        tuned_layers = resolve_layers(tuned, ["feat"])
        constrained_finetune(
            tuned, epoch_batches, F.cross_entropy, tuned_layers, found.masks,
            epochs=10, lr=0.1, loss_scale=scale,
        )  # fmt: skip
        mass = irrelevant_gradient_mass(tuned, held, tuned_layers, found.masks)
        accuracy = (tuned(held_x).argmax(1) == held_y).float().mean().item()
        after[scale] = (mass, accuracy)
    assert before > 0
    assert after[5.0][0] < 0.5 * after[0.0][0]  # the constraint, not the extra epochs
    assert after[5.0][0] < 0.5 * before
    assert after[5.0][1] >= after[0.0][1] - 0.05  # at no real cost in held-out accuracy


def test_bad_plugin_settings_name_their_key():
    with pytest.raises(ConfigError, match="cl_strategy.plugins.loss_scale"):
        ModelDoctorPlugin(loss_scale=-1)
    with pytest.raises(ConfigError, match="cl_strategy.plugins.score"):
        ModelDoctorPlugin(score="grad")
    with pytest.raises(ConfigError, match="cl_strategy.plugins.layers.*'feet'"):
        resolve_layers(KnownChannels(), ["feat", "feet"], "cl_strategy.plugins.layers")
    with pytest.raises(ConfigError, match="cl_strategy.plugins.classes: class 4 is out of range"):
        ModelDoctorPlugin(classes=[1, 4]).constrained_class_ids(4, None)


def test_tail_subset_takes_the_rarest_seen_classes():
    plugin = ModelDoctorPlugin(classes="tail", tail_fraction=0.4)
    counts = torch.tensor([500, 3, 50, 0, 5, 200])  # class 3 not seen yet
    assert plugin.constrained_class_ids(6, counts) == [1, 4]
    assert ModelDoctorPlugin().constrained_class_ids(3, counts) == [0, 1, 2]


@pytest.mark.slow
def test_end_to_end_sifts_on_training_images_only_and_keeps_the_masks(
    synthetic_cfg, tmp_path, monkeypatch
):
    from avalanche_ext.builders import build_scenario  # noqa: PLC0415
    from avalanche_ext.runner import run  # noqa: PLC0415

    seen: set[bytes] = set()
    real = md.eval_batches

    def fingerprints(images: torch.Tensor) -> set[bytes]:
        pixels = (images.detach().cpu() * 255).round().to(torch.uint8).flatten(1)
        return {row.numpy().tobytes() for row in pixels}

    def spy(dataset, *args, **kwargs):
        for batch in real(dataset, *args, **kwargs):
            seen.update(fingerprints(batch[0]))
            yield batch

    monkeypatch.setattr(md, "eval_batches", spy)
    cfg = synthetic_cfg
    cfg.cl_strategy.plugins = [
        dict(
            type="ModelDoctorPlugin", layers=["backbone.layer3"], confidence=0.0, epochs=1,
            batch_size=16, loss_scale=1.0,
        )
    ]  # fmt: skip
    results = run(cfg, work_dir=str(tmp_path / "run"))

    def stream_fingerprints(stream) -> set[bytes]:
        return set().union(
            *(fingerprints(b[0]) for e in stream for b in real(e.dataset.eval(), 64))
        )

    scenario = build_scenario(cfg.scenario)
    train = stream_fingerprints(scenario.benchmark.train_stream)
    test = stream_fingerprints(scenario.benchmark.test_stream)
    assert not train & test  # the check below can tell them apart
    assert len(seen) > 100 and seen <= train and not seen & test
    block = results["model_doctor"]
    masks = block["masks"]["backbone.layer3"]
    assert len(masks) == 6 and len(masks[0]) == 64
    assert (tmp_path / "run" / "latest" / "figures" / "model_doctor_masks_0.png").exists()
    ckpt = torch.load(tmp_path / "run" / "latest" / "checkpoints" / "latest.pth", weights_only=True)
    state = next(v for k, v in ckpt["plugins"].items() if k.endswith("ModelDoctorPlugin"))
    assert state["masks"]["backbone.layer3"].int().tolist() == masks


@pytest.mark.slow
def test_class_balanced_fine_tuning_of_the_tail_runs_end_to_end(synthetic_cfg, tmp_path):
    from avalanche_ext.runner import run  # noqa: PLC0415

    cfg = synthetic_cfg
    cfg.cl_strategy.plugins = [
        dict(
            type="ModelDoctorPlugin",
            layers=["backbone.layer2", "backbone.layer3.0.conv2"],
            score=["positive_gradient", "positive_activation"],
            combine="union",
            confidence=0.0,
            classes="tail",
            tail_fraction=0.5,
            sampling="class_balanced",
            noise_std=0.1,
            epochs=1,
            batch_size=16,
        )
    ]
    results = run(cfg, work_dir=str(tmp_path / "run"))
    block = results["model_doctor"]
    assert set(block["masks"]) == {"backbone.layer2", "backbone.layer3.0.conv2"}
    assert block["constrained_classes"] == [0, 1, 2]  # half of the six seen (all 24 images)
    assert len(block["finetune_losses"]) == 1
