"""EpochsPerExperiencePlugin: each experience trains its own number of epochs."""

from __future__ import annotations

import pytest
import torch
from avalanche.training.plugins import EvaluationPlugin, SupervisedPlugin
from avalanche.training.supervised import Naive

from avalanche_ext.scenario import make_benchmark
from avalanche_ext.transforms import build_pipeline
from scenarios._cifar_common import labeled_dataset
from strategies.epochs_per_experience import EpochsPerExperiencePlugin, epochs_for


class _CountEpochs(SupervisedPlugin):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def before_training_exp(self, strategy, **kwargs):
        self.epochs.append(0)

    def after_training_epoch(self, strategy, **kwargs):
        self.epochs[-1] += 1


def test_each_experience_trains_its_epochs_and_the_last_value_repeats():
    assert [epochs_for([3, 1], i) for i in range(4)] == [3, 1, 1, 1]
    to_tensor = build_pipeline([dict(type="ToTensor")])
    data = [
        labeled_dataset(
            torch.zeros(4, 3, 4, 4, dtype=torch.uint8), torch.full((4,), c), to_tensor, to_tensor
        )
        for c in range(3)
    ]
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
    counter = _CountEpochs()
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        train_mb_size=4,
        train_epochs=7,
        plugins=[EpochsPerExperiencePlugin(epochs=[3, 1]), counter],
        evaluator=EvaluationPlugin(loggers=[]),
    )
    for exp in make_benchmark(data, data).train_stream:
        strategy.train(exp, eval_streams=[])
    assert counter.epochs == [3, 1, 1]


@pytest.mark.parametrize("bad", [[], [0], [2, -1], [1.5], [True]])
def test_bad_epochs_are_refused(bad):
    with pytest.raises(ValueError, match="epochs"):
        EpochsPerExperiencePlugin(epochs=bad)
