"""The runtime block's CUDA options: plumbing on the CPU, the real thing on a GPU (skipped here)."""

from __future__ import annotations

import json

import pytest
import torch
from avalanche.training.plugins import EvaluationPlugin, SupervisedPlugin
from avalanche.training.supervised import Naive

from avalanche_ext import accelerate
from avalanche_ext.accelerate import (
    MixedPrecisionPlugin,
    amp_dtype,
    compile_model,
    precision_name,
    set_cudnn_benchmark,
)
from avalanche_ext.data.batched import BatchedDataPlugin
from avalanche_ext.errors import ConfigError
from avalanche_ext.runtime import RuntimeOptions, parse_runtime, runtime_plugins
from avalanche_ext.scenario import make_benchmark
from avalanche_ext.transforms import build_pipeline
from scenarios._cifar_common import labeled_dataset
from tests.conftest import SYNTHETIC_CONFIG, run_main

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_amp_dtype_choice(monkeypatch):
    assert amp_dtype("auto", CPU) is None and amp_dtype(False, CPU) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert amp_dtype("auto", CUDA) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert amp_dtype("auto", CUDA) == torch.float16
    assert amp_dtype("bf16", CUDA) == torch.bfloat16 and amp_dtype(False, CUDA) is None


def test_an_explicit_amp_on_the_cpu_is_honoured_or_refused(monkeypatch):
    """'bf16' on a CPU with native bf16 autocasts (it was silently ignored before); where it
    cannot be honoured the choice is refused, naming the key, instead of running float32."""
    monkeypatch.setattr(accelerate, "cpu_has_native_bf16", lambda: True)
    assert amp_dtype("bf16", CPU) == torch.bfloat16
    plugins = runtime_plugins(parse_runtime({"runtime": {"amp": "bf16"}}), 0, CPU)
    assert [type(p) for p in plugins] == [MixedPrecisionPlugin, BatchedDataPlugin]
    assert plugins[0].device_type == "cpu" and plugins[0].scaler is None
    with pytest.raises(ConfigError, match="runtime.amp: 'fp16'"):
        amp_dtype("fp16", CPU)
    monkeypatch.setattr(accelerate, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(ConfigError, match="runtime.amp: 'bf16' needs a CPU with native bf16"):
        amp_dtype("bf16", CPU)


def test_precision_names():
    assert precision_name(None) == "float32"
    assert precision_name(torch.bfloat16) == "bfloat16 autocast"
    assert precision_name(torch.float16) == "float16 autocast + GradScaler"


def test_a_cpu_run_in_bf16_says_so_in_its_results(monkeypatch, tmp_path):
    """The whole command line with ``runtime.amp=bf16`` (native bf16 assumed: the autocast itself
    runs anywhere, only slower): the run trains and records how it computed."""
    monkeypatch.setattr(accelerate, "cpu_has_native_bf16", lambda: True)
    proc = run_main(
        str(SYNTHETIC_CONFIG), "--work-dir", str(tmp_path), "--cfg-options", "runtime.amp=bf16"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mixed precision: autocast bfloat16" in proc.stdout + proc.stderr  # plugin installed
    results = json.loads(next(tmp_path.glob("*/results.json")).read_text())
    assert results["precision"] == "bfloat16 autocast"
    assert results["final"]["stream_accuracy"] > 0


def test_runtime_plugins_on_the_cpu():
    plugins = runtime_plugins(RuntimeOptions(), 0, CPU)
    assert [type(p) for p in plugins] == [BatchedDataPlugin]
    assert runtime_plugins(parse_runtime({"runtime": {"batched_data": False}}), 0, CPU) == []
    before = torch.backends.cudnn.benchmark
    try:
        assert set_cudnn_benchmark("auto", CPU) is False
        assert set_cudnn_benchmark("auto", CUDA) is True and torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.benchmark = before


class _Probe(SupervisedPlugin):
    """Records the dtype the model's linear layer computes in, and the logits' dtype."""

    def __init__(self, model):
        super().__init__()
        self.inner, self.outer = [], []
        model[1].register_forward_hook(lambda m, i, o: self.inner.append(o.dtype))

    def after_forward(self, strategy, **kwargs):
        self.outer.append(strategy.mb_output.dtype)


def _train(dtype):
    to_tensor = build_pipeline([dict(type="ToTensor")])
    images = torch.randint(0, 256, (16, 3, 4, 4), dtype=torch.uint8)
    data = labeled_dataset(images, torch.arange(16) % 2, to_tensor, to_tensor)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 2))
    amp = MixedPrecisionPlugin(dtype, device_type="cpu")
    probe = _Probe(model)
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        train_mb_size=8,
        plugins=[amp, probe],
        evaluator=EvaluationPlugin(loggers=[]),
    )
    bench = make_benchmark([data], [data])
    strategy.train(bench.train_stream[0], eval_streams=[])
    strategy.eval(bench.test_stream)
    return amp, probe, model


def test_autocast_runs_the_forward_in_low_precision_and_hands_out_float32():
    amp, probe, _ = _train(torch.bfloat16)
    assert probe.inner == [torch.bfloat16] * 4  # 2 train + 2 eval batches
    assert probe.outer == [torch.float32] * 2
    assert amp.scaler is None and amp.state_dict() == {}


def test_fp16_scales_the_loss_and_keeps_the_scaler_state():
    amp, probe, model = _train(torch.float16)
    assert probe.inner[0] == torch.float16
    state = amp.state_dict()["scaler"]
    assert state["scale"] > 0 and state["_growth_tracker"] == 2  # two finite steps
    assert torch.isfinite(model[1].weight).all()
    fresh = MixedPrecisionPlugin(torch.float16, device_type="cpu")
    fresh.load_state_dict(amp.state_dict())
    assert fresh.scaler.state_dict() == state


def test_compile_is_in_place_and_keeps_checkpoint_keys(monkeypatch):
    from avalanche_ext import builders  # noqa: PLC0415

    model = builders.build_model(
        dict(
            backbone=dict(type="CifarResNet", depth=8),
            neck=dict(type="GlobalAveragePooling"),
            head=dict(type="LinearClsHead", num_classes=3, in_channels=64),
        )
    )
    keys = list(model.state_dict())
    compiled = []  # torch.compile itself is exercised by the GPU test (importing dynamo takes 15 s)
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(self))
    assert compile_model(model) is model
    assert compiled == [model.backbone] and list(model.state_dict()) == keys
    options = parse_runtime({"runtime": {"compile": True}})
    runtime_plugins(options, 0, CPU, model=model)
    assert compiled == [model.backbone, model.backbone]


@pytest.mark.gpu
def test_cuda_run_uses_autocast_and_gpu_resident_data(synthetic_cfg, tmp_path):
    from avalanche_ext.runner import run  # noqa: PLC0415

    messages = []
    synthetic_cfg.runtime = dict(amp="auto", cudnn_benchmark=True, compile=True)
    results = run(synthetic_cfg, device="cuda", work_dir=str(tmp_path), progress=messages.append)
    assert any(m.startswith("mixed precision: autocast") for m in messages)
    assert any("batched on cuda" in m for m in messages)
    assert results["final"]["stream_accuracy"] is not None
