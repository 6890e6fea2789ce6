#!/usr/bin/env python
"""The data path against the compute limit: in one run, pure compute of one model and batch in NCHW
and channels_last, then the project's own train and eval throughput (Avalanche strategy, runner's
plugins, the demo's pipelines and metrics) on the same model and batch, and the fractions.

    python benchmarks/data_path.py [--depth 32] [--batch-size 128] [--eval-batch-size 512]
        [--images 5120] [--eval-images 5120] [--steps 20] [--device cpu] [--per-sample]
        [--write benchmarks/RESULTS.md]

Pure compute = a train step (forward, cross-entropy, backward, SGD with momentum) or an eval forward
on tensors already in memory in the right layout: no data path, no framework. The project's numbers
are images/s of whole epochs (after a warm-up epoch) and of a whole test-stream evaluation.
Goal (issue 9): train >= 0.95 and eval >= 0.90 of the best pure-compute layout. Timing on a loaded
machine is meaningless: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import avalanche_ext  # noqa: E402, F401  (fixes before torchvision/avalanche)

# isort: split
import torch  # noqa: E402
from avalanche.training.plugins import SupervisedPlugin  # noqa: E402

from avalanche_ext import builders  # noqa: E402
from avalanche_ext.errors import ConfigError  # noqa: E402
from avalanche_ext.runtime import RuntimeOptions, runtime_plugins  # noqa: E402
from avalanche_ext.scenario import make_benchmark  # noqa: E402
from avalanche_ext.transforms import build_pipeline  # noqa: E402
from scenarios._cifar_common import eval_dataset, labeled_dataset  # noqa: E402

__all__ = ["cpu_model", "main", "project_throughput", "pure_compute"]

MEAN, STD = [0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]
TRAIN_PIPELINE = [
    dict(type="RandomCrop", size=32, padding=4),
    dict(type="RandomHorizontalFlip"),
    dict(type="ToTensor"),
    dict(type="Normalize", mean=MEAN, std=STD),
]
TEST_PIPELINE = [dict(type="ToTensor"), dict(type="Normalize", mean=MEAN, std=STD)]
# the demo's metrics (configs/demo.py) minus the confusion-matrix image, which needs a scenario
METRICS = [
    dict(type="accuracy_metrics", minibatch=True, epoch=True, experience=True, stream=True),
    dict(type="loss_metrics", minibatch=True, epoch=True, experience=True, stream=True),
    dict(type="timing_metrics", epoch=True, epoch_running=True),
    dict(type="cpu_usage_metrics", experience=True),
]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def model_cfg(depth: int) -> dict:
    return dict(
        type="MMClassifier",
        backbone=dict(type="CifarResNet", depth=depth),
        neck=dict(type="GlobalAveragePooling"),
        head=dict(type="LinearClsHead", num_classes=100, in_channels=64),
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pure_compute(
    depth: int, batch: int, eval_batch: int, steps: int, device: torch.device
) -> dict[str, dict[str, float]]:
    """Images/s of a bare train step and eval forward, per memory layout."""
    out: dict[str, dict[str, float]] = {}
    for layout, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        torch.manual_seed(0)
        model = builders.build_model(model_cfg(depth)).to(device).to(memory_format=fmt)
        opt = torch.optim.SGD(
            model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True
        )
        x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
        y = torch.randint(0, 100, (batch,), device=device)
        loss_fn = torch.nn.CrossEntropyLoss()
        model.train()
        for i in range(steps + 3):
            if i == 3:
                _sync(device)
                start = time.perf_counter()
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        _sync(device)
        train = steps * batch / (time.perf_counter() - start)
        xe = torch.randn(eval_batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
        model.eval()
        eval_steps = max(2, steps * batch // eval_batch)
        with torch.inference_mode():
            for i in range(eval_steps + 1):
                if i == 1:
                    _sync(device)
                    start = time.perf_counter()
                model(xe)
        _sync(device)
        out[layout] = {
            "train_images_per_s": train,
            "eval_images_per_s": eval_steps * eval_batch / (time.perf_counter() - start),
        }
    return out


class _EpochTimer(SupervisedPlugin):
    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[float] = []

    def before_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        _sync(strategy.device)
        self._start = time.perf_counter()

    def after_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        _sync(strategy.device)
        self.epochs.append(time.perf_counter() - self._start)


def _images(n_train: int, n_test: int) -> tuple[torch.Tensor, ...]:
    """CIFAR-100 images when the data is there (speed does not depend on content), else noise."""
    from avalanche_ext.datasets.cifar import load_cifar100  # noqa: PLC0415

    try:
        data = load_cifar100()
        return (
            data.train_images[:n_train],
            data.train_labels[:n_train],
            data.test_images[:n_test],
            data.test_labels[:n_test],
        )
    except ConfigError:
        g = torch.Generator().manual_seed(0)
        return (
            torch.randint(0, 256, (n_train, 3, 32, 32), dtype=torch.uint8, generator=g),
            torch.randint(0, 100, (n_train,), generator=g),
            torch.randint(0, 256, (n_test, 3, 32, 32), dtype=torch.uint8, generator=g),
            torch.randint(0, 100, (n_test,), generator=g),
        )


def project_throughput(
    depth: int,
    batch: int,
    eval_batch: int,
    n_train: int,
    n_test: int,
    device: torch.device,
    batched: bool,
) -> dict[str, Any]:
    """Images/s of the project's training epoch and test-stream evaluation."""
    train_images, train_labels, test_images, test_labels = _images(n_train, n_test)
    train_t, test_t = build_pipeline(TRAIN_PIPELINE), build_pipeline(TEST_PIPELINE)
    bench = make_benchmark(
        [labeled_dataset(train_images, train_labels, train_t, test_t)],
        [eval_dataset(test_images, test_labels, test_t)],
    )
    torch.manual_seed(0)
    model = builders.build_model(model_cfg(depth))
    evaluator = builders.build_evaluator(METRICS, [])
    timer = _EpochTimer()
    choices: list[str] = []
    strategy = builders.build_strategy(
        dict(
            type="Naive",
            train_mb_size=batch,
            eval_mb_size=eval_batch,
            train_epochs=2,  # the first is a warm-up
            optimizer=dict(type="SGD", lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True),
            loss=dict(type="CrossEntropyLoss"),
        ),
        model,
        evaluator,
        device,
        plugins=[timer],
    )
    options = RuntimeOptions(batched_data="auto" if batched else False)
    strategy.plugins.extend(runtime_plugins(options, 0, device, choices.append))
    strategy.train(bench.train_stream[0], eval_streams=[])
    strategy.eval(bench.test_stream)  # warm-up
    _sync(device)
    start = time.perf_counter()
    strategy.eval(bench.test_stream)
    _sync(device)
    eval_s = time.perf_counter() - start
    return {
        "data_path": choices or ["per-sample (runtime.batched_data=False)"],
        "train_epoch_s": timer.epochs[-1],
        "train_images_per_s": n_train / timer.epochs[-1],
        "eval_s": eval_s,
        "eval_images_per_s": n_test / eval_s,
    }


def _section(args, pure, runs, fractions) -> str:
    cmd = "python benchmarks/data_path.py " + " ".join(sys.argv[1:])
    lines = [
        f"## Data path against pure compute ({args.device})",
        "",
        f"Machine: {cpu_model()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}."
        f" Date: {datetime.date.today().isoformat()}. Command: `{cmd.strip()}`",
        f"CifarResNet-{args.depth}, train batch {args.batch_size}, eval batch "
        f"{args.eval_batch_size}; project: {args.images} train / {args.eval_images} test CIFAR-100"
        " images, the demo's pipelines and per-minibatch metrics.",
        "",
        "| | train images/s | eval images/s |",
        "|---|--:|--:|",
    ]
    for layout, v in pure.items():
        lines.append(
            f"| pure compute, {layout} | {v['train_images_per_s']:.1f} | "
            f"{v['eval_images_per_s']:.1f} |"
        )
    for name, r in runs.items():
        lines.append(
            f"| project, {name} | {r['train_images_per_s']:.1f} | {r['eval_images_per_s']:.1f} |"
        )
    lines += [
        "",
        "Fractions of the best pure-compute layout (goal: train >= 0.95, eval >= 0.90):",
        "",
    ]
    for name, f in fractions.items():
        lines.append(f"* {name}: train {f['train']:.3f}, eval {f['eval']:.3f}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=32, help="CifarResNet depth")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--eval-batch-size", type=int, default=512)
    parser.add_argument("--images", type=int, default=5120, help="training images per epoch")
    parser.add_argument("--eval-images", type=int, default=5120)
    parser.add_argument("--steps", type=int, default=20, help="timed pure-compute train steps")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument(
        "--per-sample", action="store_true", help="also measure the per-sample data path"
    )
    parser.add_argument("--write", help="append a section to this markdown file")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    pure = pure_compute(args.depth, args.batch_size, args.eval_batch_size, args.steps, device)
    print(f"pure compute: {json.dumps(pure)}", file=sys.stderr, flush=True)
    runs = {}
    for name, batched in (("batched", True), ("per-sample", False)):
        if name == "per-sample" and not args.per_sample:
            continue
        runs[name] = project_throughput(
            args.depth,
            args.batch_size,
            args.eval_batch_size,
            args.images,
            args.eval_images,
            device,
            batched,
        )
        print(f"{name}: {json.dumps(runs[name])}", file=sys.stderr, flush=True)
    best_train = max(v["train_images_per_s"] for v in pure.values())
    best_eval = max(v["eval_images_per_s"] for v in pure.values())
    fractions = {
        name: {
            "train": r["train_images_per_s"] / best_train,
            "eval": r["eval_images_per_s"] / best_eval,
        }
        for name, r in runs.items()
    }
    section = _section(args, pure, runs, fractions)
    print(section)
    if args.write:
        with open(args.write, "a") as fh:
            fh.write("\n" + section)
    if args.json:
        payload = {"args": vars(args), "pure": pure, "project": runs, "fractions": fractions}
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
