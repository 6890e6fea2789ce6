"""The example of a user's own plugin (examples/my_plugin.py) runs through train_config.py (its
``main``, in-process), registered only by its config's custom_imports, and its effect shows in
results.json.
"""

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import run_main

REPO = Path(__file__).resolve().parents[2]
CONFIG = "configs/examples/custom_plugin_synthetic.py"


@pytest.mark.slow
def test_custom_plugin_runs_through_the_cli(tmp_path):
    done = run_main(CONFIG, "--work-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "latest" / "results.json").read_text())
    assert len(results["experiences"]) == 3
    for i, experience in enumerate(results["experiences"]):
        metrics = experience["eval"]
        mean = metrics[f"GradNorm_Mean/train_phase/Exp{i:03d}"]
        clipped = metrics[f"GradNorm_ClippedFraction/train_phase/Exp{i:03d}"]
        assert mean > 0 and 0.0 <= clipped <= 1.0
    saved = (Path(results["run_dir"]) / "config.py").read_text()
    assert "examples.my_plugin" in saved and "GradNormClipPlugin" in saved


def test_plugin_clips_the_gradient_norm():
    from types import SimpleNamespace  # noqa: PLC0415

    from examples.my_plugin import GradNormClipPlugin  # noqa: PLC0415

    layer = torch.nn.Linear(2, 1, bias=False)
    layer.weight.grad = torch.tensor([[3.0, 4.0]])  # norm 5
    plugin = GradNormClipPlugin(max_norm=1.0)
    plugin.after_backward(SimpleNamespace(model=layer))
    assert plugin.norms == [pytest.approx(5.0)]
    assert layer.weight.grad.norm().item() == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(ValueError):
        GradNormClipPlugin(max_norm=0)
