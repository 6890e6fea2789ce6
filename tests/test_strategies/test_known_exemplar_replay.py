"""KnownExemplarReplayPlugin: a class-balanced memory of labeled known images replayed in the
discovery update, drawn from the images the base model trained on, never from the held-out known
images that choose the operating point (drawing those made the held-out estimate of the old-class
accuracy 7 points too kind on the proxy task: benchmarks/RESULTS.md)."""

import avalanche_ext  # noqa: F401  (stack fixes before avalanche imports torchvision)

# isort: split
import pytest
import torch
from avalanche.training.plugins import SupervisedPlugin

from avalanche_ext.plugins.known_exemplar_replay import (
    KnownExemplarReplayPlugin,
    class_balanced_choice,
)
from tests.test_strategies.test_confidence_gate import (
    clustering,
    discovery_stream,
    gate,
    run_stream,
)


def test_class_balanced_choice_takes_per_class_rows_of_labeled_samples_only():
    targets = torch.tensor([0, 0, 0, 1, -1, 1, 2, -1, 0])
    rows = class_balanced_choice(targets, 2, torch.Generator().manual_seed(0))
    assert torch.equal(rows, rows.sort().values)
    counts = torch.bincount(targets[rows], minlength=3).tolist()
    assert counts == [2, 2, 1]  # class 2 has one row: it keeps it
    again = class_balanced_choice(targets, 2, torch.Generator().manual_seed(0))
    assert torch.equal(rows, again)


class _Spy(SupervisedPlugin):
    """Copies the replay plugin's memory and loss after each backward pass."""

    def __init__(self, replay: KnownExemplarReplayPlugin):
        super().__init__()
        self.replay = replay
        self.memory: dict[int, dict | None] = {}
        self.losses: list[float] = []

    def after_backward(self, strategy, **kwargs):
        self.memory[strategy.experience.current_experience] = self.replay._memory
        if self.replay.last_loss is not None:
            self.losses.append(self.replay.last_loss)


@pytest.mark.filterwarnings("ignore:No loggers specified")
def test_the_memory_holds_trained_known_images_and_never_a_held_out_one():
    scenario = discovery_stream()
    the_gate = gate(seed=3)
    replay = KnownExemplarReplayPlugin(per_class=5, batch_size=8, seed=3)
    spy = _Spy(replay)
    strategy = run_stream([the_gate, clustering(), replay, spy], scenario)
    base = scenario.benchmark.train_stream[0].dataset.eval()
    held, _ = the_gate.held_out_split(len(base), 0)
    # the split the gate reports is the one it held out: the calibration images are those rows
    held_images = torch.stack([base[int(i)][0] for i in held])
    assert torch.allclose(strategy.ncd.calibration_images, held_images)
    assert spy.memory[0] is None  # a labeled experience replays nothing
    memory = spy.memory[1]
    rows = memory["rows"]
    assert not set(rows.tolist()) & set(held.tolist())
    labels = torch.tensor([int(base[int(i)][1]) for i in rows])
    assert torch.equal(memory["targets"], labels)
    assert torch.bincount(labels).tolist() == [5, 5, 5]
    assert spy.losses and all(torch.isfinite(torch.tensor(spy.losses)))
    assert replay.results_section() == (
        "known_exemplars",
        {"images": 15, "classes": 3, "per_class": 5, "exemplar_free": False},
    )


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="per_class"):
        KnownExemplarReplayPlugin(per_class=0)
    with pytest.raises(ValueError, match="weight"):
        KnownExemplarReplayPlugin(weight=-1.0)


@pytest.mark.filterwarnings("ignore:No loggers specified")
def test_the_replayed_loss_trains_the_model():
    def final_weights(weight: float) -> list[torch.Tensor]:
        torch.manual_seed(0)
        replay = KnownExemplarReplayPlugin(per_class=5, batch_size=8, weight=weight, seed=3)
        strategy = run_stream([gate(seed=3), clustering(), replay], discovery_stream())
        return [p.detach().clone() for p in strategy.model.parameters()]

    off, off_again, on = final_weights(0.0), final_weights(0.0), final_weights(1.0)
    assert all(torch.equal(a, b) for a, b in zip(off, off_again, strict=True)), "deterministic"
    assert not all(torch.equal(a, b) for a, b in zip(off, on, strict=True)), "the loss is added"
