#!/usr/bin/env python
"""One training step of a config's model in float32 and under CPU bf16 autocast, alternated.

    python benchmarks/cpu_bf16.py [--config configs/ncd/ncd_resnet14_cpu-24e_cifar100-80+20lt.py]
        [--batch-size 128] [--steps 10] [--rounds 2]

A step is forward, cross-entropy, backward and an SGD step on one random batch already in memory
(channels_last, as the runner feeds convolution nets). Each round times ``--steps`` steps after 3
warm-up steps, float32 then bf16. It tells whether ``runtime.amp='bf16'`` pays on this CPU (it
needs native bf16: AVX512-BF16 or AMX). Timing on a loaded machine is meaningless: run it on a
quiet one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import avalanche_ext  # noqa: E402, F401  (fixes before torchvision/avalanche)
from avalanche_ext import builders  # noqa: E402
from avalanche_ext.accelerate import cpu_has_native_bf16  # noqa: E402
from avalanche_ext.config import load_config  # noqa: E402
from benchmarks.ncd_ablation import cpu_model  # noqa: E402

FLAGSHIP = "configs/ncd/ncd_resnet14_cpu-24e_cifar100-80+20lt.py"


def seconds_per_step(model, batch, labels, bf16: bool, steps: int) -> float:
    """Mean wall seconds of ``steps`` training steps (after 3 untimed ones)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(batch)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--config", default=FLAGSHIP)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    model = builders.build_model(cfg.model).train().to(memory_format=torch.channels_last)
    classes = int(model.num_classes)
    batch = torch.randn(args.batch_size, 3, 32, 32).to(memory_format=torch.channels_last)
    labels = torch.randint(0, classes, (args.batch_size,))
    print(
        f"Machine: {cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
        f"native bf16: {cpu_has_native_bf16()}"
    )
    for r in range(args.rounds):
        fp32 = seconds_per_step(model, batch, labels, False, args.steps)
        bf16 = seconds_per_step(model, batch, labels, True, args.steps)
        print(f"round {r}: float32 {fp32:.4f} s/step, bf16 {bf16:.4f} s/step, {fp32 / bf16:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
