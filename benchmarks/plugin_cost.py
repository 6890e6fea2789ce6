#!/usr/bin/env python
"""Training cost of the discovery plugins: per-epoch time of Naive, Naive + LwF and the dual-teacher
update on the same model, data and minibatches, measured in one process (rounds interleaved).

    python benchmarks/plugin_cost.py [--images 2000] [--epochs 2] [--rounds 2] [--depth 32]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import avalanche_ext  # noqa: E402, F401  (fixes before torchvision/avalanche)

# isort: split
import torch  # noqa: E402
from avalanche.training.plugins import EvaluationPlugin, SupervisedPlugin  # noqa: E402
from avalanche.training.supervised import Naive  # noqa: E402

from avalanche_ext.datasets.cifar import load_cifar100  # noqa: E402
from avalanche_ext.models import MMClassifier  # noqa: E402
from avalanche_ext.scenario import (  # noqa: E402
    IndexedUnlabeledDataset,
    TensorImageDataset,
    make_benchmark,
    make_dataset,
)
from avalanche_ext.transforms import build_pipeline  # noqa: E402
from strategies.confidence_gate import ConfidenceGatedPoolPlugin  # noqa: E402
from strategies.dual_teacher import DualTeacherDistillationPlugin  # noqa: E402
from strategies.lwf import LwFPlugin  # noqa: E402
from strategies.pseudo_label_clustering import PseudoLabelClusteringPlugin  # noqa: E402

__all__ = ["EpochTimer", "main", "measure"]

MEAN, STD = [0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]
NUM_OLD = 80


class EpochTimer(SupervisedPlugin):
    """Wall time of every training epoch, and of everything before the first epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[float] = []
        self.setup_s = 0.0

    def before_train_dataset_adaptation(self, strategy: Any, **kwargs: Any) -> None:
        self._setup = time.perf_counter()

    def before_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        if not self.epochs:
            self.setup_s = time.perf_counter() - self._setup
        self._start = time.perf_counter()

    def after_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        self.epochs.append(time.perf_counter() - self._start)


def build_model(depth: int) -> MMClassifier:
    torch.manual_seed(0)
    return MMClassifier(
        backbone=dict(type="CifarResNet", depth=depth),
        neck=dict(type="GlobalAveragePooling"),
        head=dict(type="LinearClsHead", num_classes=NUM_OLD, in_channels=64),
    )


def datasets(num_images: int) -> tuple[Any, Any, Any]:
    """A 256-image labeled warm-up (gives LwF and Teacher A a previous model), the measured images
    labeled (Naive, LwF) and the same images unlabeled (the dual-teacher discovery update)."""
    data = load_cifar100()
    transform = build_pipeline([dict(type="ToTensor"), dict(type="Normalize", mean=MEAN, std=STD)])
    known = torch.nonzero(data.train_labels < NUM_OLD).flatten()
    images, labels = data.train_images[known], data.train_labels[known]
    warm = make_dataset(TensorImageDataset(images[:256], labels[:256]), transform, transform)
    chosen = slice(256, 256 + num_images)
    labeled = make_dataset(TensorImageDataset(images[chosen], labels[chosen]), transform, transform)
    hidden = IndexedUnlabeledDataset(images[chosen])
    unlabeled = make_dataset(hidden, transform, transform, targets=hidden.targets)
    return warm, labeled, unlabeled


def method_plugins(name: str) -> list:
    if name == "naive":
        return []
    if name == "lwf":
        return [LwFPlugin(alpha=1.0, temperature=2.0)]
    return [
        ConfidenceGatedPoolPlugin(threshold=-1e9, capacity=100_000, trigger_size=1),
        PseudoLabelClusteringPlugin(num_clusters=20, backend="auto", balanced=True),
        DualTeacherDistillationPlugin(
            alpha_old=1.0,
            temperature=2.0,
            feature_weight=1.0,
            backbone_lr_mult=0.1,
            mask_old_logits=True,
            freeze_bn=True,
            calibrate_new_bias=True,
        ),
    ]


def measure(name: str, init: dict, data: tuple, depth: int, epochs: int, batch: int) -> dict:
    """Trains the warm-up then the measured experience; returns the measured epochs' timings."""
    warm, labeled, unlabeled = data
    model = build_model(depth)
    model.load_state_dict(init)
    timer = EpochTimer()
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        criterion=torch.nn.CrossEntropyLoss(),
        train_mb_size=batch,
        eval_mb_size=256,
        train_epochs=epochs,
        device="cpu",
        plugins=[*method_plugins(name), timer],
        evaluator=EvaluationPlugin(loggers=[]),
    )
    strategy.num_known_classes = NUM_OLD
    bench = make_benchmark([warm, unlabeled if name == "dual_teacher" else labeled], [warm, warm])
    stream = list(bench.train_stream)
    strategy.train_epochs = 1
    strategy.train(stream[0])
    timer.epochs.clear()
    strategy.train_epochs = epochs
    start = time.perf_counter()
    strategy.train(stream[1])
    total = time.perf_counter() - start
    return {"epochs_s": list(timer.epochs), "setup_s": timer.setup_s, "experience_s": total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions")
    parser.add_argument("--depth", type=int, default=32, help="CifarResNet depth")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--json", help="also write the raw timings here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = datasets(args.images)
    init = copy.deepcopy(build_model(args.depth).state_dict())
    methods = ["naive", "lwf", "dual_teacher"]
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for _ in range(args.rounds):
        for name in methods:
            runs[name].append(measure(name, init, data, args.depth, args.epochs, args.batch_size))
            print(f"{name}: {runs[name][-1]}", file=sys.stderr, flush=True)
    epoch_s = {m: statistics.median(t for r in runs[m] for t in r["epochs_s"]) for m in methods}
    setup_s = {m: statistics.median(r["setup_s"] for r in runs[m]) for m in methods}
    exp_s = {m: statistics.median(r["experience_s"] for r in runs[m]) for m in methods}
    print(
        f"CifarResNet-{args.depth}, {args.images} CIFAR-100 images x {args.epochs} epochs, "
        f"batch {args.batch_size}, {torch.get_num_threads()} threads, {args.rounds} rounds "
        f"({platform.processor() or platform.machine()}, torch {torch.__version__})"
    )
    print(
        "| method | s / epoch (median) | images / s | x Naive | before epoch 1 (s) | experience (s) |"
    )
    print("|---|---|---|---|---|---|")
    for m in methods:
        print(
            f"| {m} | {epoch_s[m]:.2f} | {args.images / epoch_s[m]:.0f} | "
            f"{epoch_s[m] / epoch_s['naive']:.2f} | {setup_s[m]:.2f} | {exp_s[m]:.1f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
