"""The processes behind tests/test_runner/test_distributed.py (spawned two at a time; not a test
module). Each rank runs the same phases and saves what it saw to ``<out>/rank<r>.pt``; rank 0 then
runs the one-process references the tests compare with."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import avalanche_ext  # noqa: F401  (the package's fixes before avalanche/torchvision)

REPO = Path(__file__).resolve().parents[2]
SYNTHETIC_CONFIG = REPO / "configs" / "synthetic" / "naive_resnet8_1ep_synthetic.py"
# Two experiences of 3 classes; 15 test images per experience, so 2 ranks split them 8 + 7 (the
# DistributedSampler pads rank 1 with a duplicate that must not be counted). 8x8 images and a linear
# classifier on the pixels: ResNet-8's batch-norm statistics after a handful of steps leave its test
# accuracy at chance (train accuracy 0.8-1.0), which would make one and two processes incomparable;
# batch norm across ranks is checked on its own (train_bn).
E2E_OPTIONS = [
    "scenario.num_classes=6",
    "scenario.num_experiences=2",
    "scenario.images_per_class=16",
    "scenario.test_images_per_class=5",
    "scenario.image_size=8",
    "model.backbone=None",
    "model.neck=None",
    "model.head.in_channels=192",
    "cl_strategy.train_epochs=3",
]
PER_RANK_BATCH = {"cl_strategy.train_mb_size": 8, "cl_strategy.eval_mb_size": 4}


def _options(world: int) -> list[str]:
    """``--cfg-options`` of the end-to-end runs, batch sizes for the same global batch."""
    return ["--cfg-options", *E2E_OPTIONS, *(f"{k}={v * world}" for k, v in PER_RANK_BATCH.items())]


def make_stream(n_train: int = 12, n_test: int = 9):
    """One experience of random 3x4x4 images, 3 classes; pixel (0, 0, 0) holds the sample id."""
    from avalanche_ext.scenario import TensorImageDataset, make_benchmark, make_dataset
    from avalanche_ext.transforms import ToTensor

    g = torch.Generator().manual_seed(0)

    def part(n: int):
        images = torch.randint(0, 256, (n, 3, 4, 4), generator=g, dtype=torch.uint8)
        images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
        dataset = TensorImageDataset(images, torch.arange(n) % 3)
        return make_dataset(dataset, ToTensor(), ToTensor())

    return make_benchmark([part(n_train)], [part(n_test)])


def train_linear(bench, train_mb: int, eval_mb: int, epochs: int, shuffle: bool) -> dict[str, Any]:
    """Naive on a linear model (no batch norm: DDP must match one process exactly)."""
    from avalanche.core import SupervisedPlugin
    from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
    from avalanche.training import Naive
    from avalanche.training.plugins import EvaluationPlugin

    from avalanche_ext.distributed import attach
    from avalanche_ext.recorder import PredictionRecorder, RecordStore

    class SampleOrder(SupervisedPlugin):
        def __init__(self):
            super().__init__()
            self.epochs: list[list[int]] = []

        def before_training_epoch(self, strategy, **kwargs):
            self.epochs.append([])

        def before_forward(self, strategy, **kwargs):
            ids = (strategy.mb_x[:, 0, 0, 0] * 255).round().long()
            self.epochs[-1].extend(ids.tolist())

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 3))
    recorder, order = PredictionRecorder(), SampleOrder()
    recorder.store = RecordStore()  # the runner attaches its store around evaluation the same way
    evaluator = EvaluationPlugin(
        accuracy_metrics(experience=True, stream=True),
        loss_metrics(experience=True, stream=True),
        loggers=[],
    )
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.5),
        criterion=nn.CrossEntropyLoss(),
        train_mb_size=train_mb,
        eval_mb_size=eval_mb,
        train_epochs=epochs,
        evaluator=evaluator,
        plugins=[recorder, order],
        device="cpu",
    )
    plugin = attach(strategy, seed=0)
    strategy.train(bench.train_stream[0], shuffle=shuffle)
    after_train = torch.rand(3)  # the generators must agree on every rank after training
    metrics = strategy.eval(bench.test_stream)
    y, p = recorder.store.stream(bench.test_stream.name)
    return {
        "weights": [w.detach().clone() for w in model.parameters()],
        "metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, float | int)},
        "y": y,
        "p": p,
        "order": order.epochs,
        "rand_after_train": after_train,
        "ddp_builds": None if plugin is None else plugin.num_ddp_builds,
    }


def train_bn(bench) -> dict[str, torch.Tensor]:
    """Batch norm under DDP: each rank's running statistics move with its own minibatches (seen at
    the last iteration); after the epoch every rank holds rank 0's."""
    from avalanche.core import SupervisedPlugin
    from avalanche.training import Naive
    from avalanche.training.plugins import EvaluationPlugin

    from avalanche_ext.distributed import attach

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    seen: dict[str, torch.Tensor] = {}

    class LastIteration(SupervisedPlugin):
        def after_training_iteration(self, strategy, **kwargs):
            seen["last_iteration"] = model[2].running_mean.clone()

    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        train_mb_size=2,
        train_epochs=1,
        evaluator=EvaluationPlugin(loggers=[]),
        plugins=[LastIteration()],
        device="cpu",
    )
    attach(strategy, seed=0)
    strategy.train(bench.train_stream[0])
    seen["after_epoch"] = model[2].running_mean.clone()
    return seen


def _collectives(rank: int) -> dict[str, Any]:
    from avalanche.distributed import DistributedHelper

    from avalanche_ext import distributed as D
    from avalanche_ext.errors import ConfigError

    out: dict[str, Any] = {}
    rows = torch.arange(6.0).reshape(3, 2) if rank == 0 else torch.empty(0, 2)
    out["gather_empty"] = D.all_gather_tensor(rows)
    out["gather_int"] = D.all_gather_tensor(torch.arange(2 + 3 * rank) + 100 * rank)
    flags = torch.tensor([True, False]) if rank == 0 else torch.tensor([True])
    out["gather_bool"] = D.all_gather_tensor(flags)
    out["gather_scalar"] = D.all_gather_tensor(torch.tensor(float(rank)))
    out["helper_cat_all"] = DistributedHelper.cat_all(
        torch.tensor([1.0, 2.0]) if rank == 0 else torch.empty(0)
    )
    out["broadcast"] = D.broadcast_object({"from": rank, "t": torch.tensor([rank])})
    out["mean"] = D.all_reduce(torch.tensor([1.0 + rank]), "mean")

    def fail():
        raise ConfigError("work_dir: cannot write /nowhere")

    try:
        D.run_on_main(fail)
    except ConfigError as err:
        out["run_on_main_error"] = str(err)
    out["shard"] = D.shard_indices(7, pad=False)
    out["shard_shuffled"] = D.shard_indices(7, shuffle=True, seed=3, epoch=1, pad=False)
    out["shard_padded"] = D.shard_indices(7)
    return out


def _loader_epochs(dataset) -> list[list[int]]:
    """Sample ids of two epochs of Avalanche's own (self-sharding) loader, the plugin's epoch
    announcement in between, as ``before_training_epoch`` does."""
    from avalanche.benchmarks.utils.data_loader import SingleDatasetDataLoader

    from avalanche_ext.distributed import DistributedPlugin

    class Clock:
        train_exp_counter, train_exp_epochs = 0, 0

    class Strategy:
        clock, dataloader = Clock(), None

    plugin, strategy = DistributedPlugin(seed=0), Strategy()
    loader = SingleDatasetDataLoader(dataset, batch_size=3, shuffle=True)
    epochs = []
    for epoch in range(2):
        strategy.clock.train_exp_epochs = epoch
        plugin.before_training_epoch(strategy)
        epochs.append([int(i) for x, *_ in loader for i in (x[:, 0, 0, 0] * 255).round()])
    return epochs


def _cli(args: list[str]) -> int:
    import train_config

    return train_config.main([str(SYNTHETIC_CONFIG), *args])


def _wait_for(path: Path, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if time.time() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.05)


def worker(rank: int, world: int, ports: list[int], out_dir: str) -> None:
    """Phases (each rank): collectives and small Naive strategies in one process group; the CLI's
    ``--launcher pytorch`` run on the synthetic config; its ``--resume`` from experience 1. Then
    the one-process references, side by side (rank 0: the linear Naive, rank 1: the CLI run)."""
    out = Path(out_dir)
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1"
    )
    from avalanche.benchmarks.utils import data_loader
    from torch.utils.data import DistributedSampler

    from avalanche_ext import distributed as D

    seen: dict[str, Any] = {"seconds": {}}
    clock = time.time()

    def lap(name: str) -> None:  # where the time goes (printed by the test on failure)
        nonlocal clock
        seen["seconds"][name] = round(time.time() - clock, 2)
        clock = time.time()

    os.environ["MASTER_PORT"] = str(ports[0])
    seen["device"] = D.init_distributed("pytorch", "cpu")
    seen.update(_collectives(rank))
    bench = make_stream()
    seen["linear"] = train_linear(bench, train_mb=2, eval_mb=2, epochs=1, shuffle=False)
    if rank == 1:
        torch.rand(5)  # rank 1's generators drift; the plugin must realign them
    seen["shuffled"] = train_linear(bench, train_mb=2, eval_mb=2, epochs=2, shuffle=True)
    seen["bn"] = train_bn(bench)
    dataset = bench.train_stream[0].dataset
    seen["loader_epochs"] = _loader_epochs(dataset)
    fixed = data_loader.DistributedSampler
    data_loader.DistributedSampler = DistributedSampler  # Avalanche's own, to show its bug
    seen["avalanche_loader_epochs"] = _loader_epochs(dataset)
    data_loader.DistributedSampler = fixed
    D.teardown()
    lap("collectives and linear strategies")

    work = out / "work"
    os.environ["MASTER_PORT"] = str(ports[1])
    seen["rc"] = _cli(["--launcher", "pytorch", "--work-dir", str(work), *_options(1)])
    lap("cli run")
    (out / f"done{rank}").touch()
    if rank == 0:
        _wait_for(out / "done1")  # rank 1 has returned: whatever it wrote is there
        seen["files"] = sorted(str(p.relative_to(work)) for p in work.rglob("*"))
        run_dir = (work / "latest").resolve()
        seen["results"] = json.loads((run_dir / "results.json").read_text())
        (out / "run_dir").write_text(str(run_dir))
    _wait_for(out / "run_dir")
    run_dir = Path((out / "run_dir").read_text())
    os.environ["MASTER_PORT"] = str(ports[2])
    checkpoint = str(run_dir / "checkpoints" / "experience_1.pth")
    resume = ["--launcher", "pytorch", "--work-dir", str(work), "--resume", checkpoint]
    seen["resume_rc"] = _cli([*resume, *_options(1)])
    lap("cli resume")
    # One process each: the same global batch (and eval batch).
    if rank == 0:
        seen["resumed"] = json.loads((run_dir / "results.json").read_text())
        seen["one_linear"] = train_linear(bench, train_mb=4, eval_mb=4, epochs=1, shuffle=False)
    else:
        one = out / "one"
        seen["one_rc"] = _cli(["--work-dir", str(one), *_options(world)])
        seen["one_results"] = json.loads((one / "latest" / "results.json").read_text())
    lap("one-process references")
    torch.save(seen, out / f"rank{rank}.pt")
