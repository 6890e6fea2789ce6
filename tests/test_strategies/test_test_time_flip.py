"""TestTimeFlipPlugin: evaluation logits are the mean over the image and its mirror."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from strategies.test_time_flip import TestTimeFlipPlugin


def test_eval_logits_average_the_mirrored_image():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    x = torch.randn(6, 3, 4, 4)
    strategy = SimpleNamespace(model=model, mb_x=x, mb_output=model(x).detach())
    TestTimeFlipPlugin().after_eval_forward(strategy)
    expected = (model(x) + model(x.flip(-1))) / 2
    assert torch.allclose(strategy.mb_output, expected.detach(), atol=1e-6)
    symmetric = torch.cat([x[..., :2], x[..., :2].flip(-1)], dim=-1)  # its own mirror
    strategy = SimpleNamespace(model=model, mb_x=symmetric, mb_output=model(symmetric).detach())
    TestTimeFlipPlugin().after_eval_forward(strategy)
    assert torch.allclose(strategy.mb_output, model(symmetric).detach(), atol=1e-6)
