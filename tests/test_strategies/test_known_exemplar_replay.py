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
from avalanche_ext.scenario import (
    BuiltScenario,
    IndexedUnlabeledDataset,
    TensorImageDataset,
    make_benchmark,
    make_dataset,
)
from tests.test_strategies.test_confidence_gate import (
    blobs,
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


def two_labeled_experiences_stream() -> BuiltScenario:
    """Known classes 0 and 1 labeled first, class 2 labeled second, then an unlabeled experience
    of novel classes 3 and 4 (as ``discovery_stream``, with its labeled part split in two)."""
    x0, y0 = blobs([0, 1], 40, 0)
    x1, y1 = blobs([2], 40, 5)
    xn, yn = blobs([3, 4], 40, 1)
    xt, yt = blobs([0, 1, 2, 3, 4], 10, 4)
    train = [
        make_dataset(TensorImageDataset(x0, y0)),
        make_dataset(TensorImageDataset(x1, y1)),
        make_dataset(IndexedUnlabeledDataset(xn), targets=torch.full((len(yn),), -1)),
    ]
    test = [
        make_dataset(TensorImageDataset(xt[yt < 2], yt[yt < 2])),
        make_dataset(TensorImageDataset(xt[yt == 2], yt[yt == 2])),
        make_dataset(TensorImageDataset(xt[yt >= 3], yt[yt >= 3])),
    ]
    return BuiltScenario(
        benchmark=make_benchmark(train, test),
        num_classes=5,
        class_names=[str(c) for c in range(5)],
        info={"known_classes": [0, 1, 2], "novel_classes": [3, 4]},
        hidden_labels={2: yn},
        initial_num_classes=2,
    )


@pytest.mark.filterwarnings("ignore:No loggers specified")
def test_every_labeled_experience_is_replayed_without_its_held_out_rows():
    """A stream with two labeled experiences replays the classes of both (drawing from the last
    one only forgot classes 0 and 1), and a replayed batch's images are its labels' images."""
    scenario = two_labeled_experiences_stream()
    the_gate = gate(seed=3)
    replay = KnownExemplarReplayPlugin(per_class=5, batch_size=12, seed=3)
    spy = _Spy(replay)
    run_stream([the_gate, clustering(), replay, spy], scenario)
    memory = spy.memory[2]
    assert torch.bincount(memory["targets"]).tolist() == [5, 5, 5]
    datasets = [e.dataset.train() for e in scenario.benchmark.train_stream[:2]]
    starts = memory["starts"].tolist()
    assert starts == [0, len(datasets[0]), len(datasets[0]) + len(datasets[1])]
    for k, dataset in enumerate(datasets):
        held, _ = the_gate.held_out_split(len(dataset), k)
        mine = memory["rows"][(memory["rows"] >= starts[k]) & (memory["rows"] < starts[k + 1])]
        assert len(mine) and not set((mine - starts[k]).tolist()) & set(held.tolist())
    replay._memory = memory  # the memory as the update saw it: draw one batch from it
    x, y = replay._batch(torch.device("cpu"))
    assert len(x) == 12 and set(y.tolist()) <= {0, 1, 2}
    centres = torch.eye(x.shape[1])[:3] * 6.0  # blobs sit around 6 * e_c, spread 0.3
    assert torch.equal(torch.cdist(x, centres).argmin(1), y)
