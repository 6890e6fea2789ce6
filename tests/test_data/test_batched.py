"""Tensor views of Avalanche datasets, the batch iterators, the plugin, and the plugins' passes."""

from __future__ import annotations

import torch
from avalanche.benchmarks.utils.data_loader import ReplayDataLoader, SingleDatasetDataLoader
from torch.utils.data import DataLoader

from avalanche_ext.data.batched import (
    BatchedDataPlugin,
    BatchIterator,
    batched_iterator_for,
    extract,
    iter_batches,
)
from avalanche_ext.data.tensor_view import tensor_view, why_no_view
from avalanche_ext.errors import ConfigError
from avalanche_ext.runtime import RuntimeOptions, parse_runtime
from avalanche_ext.scenario import UNLABELED, make_dataset
from avalanche_ext.transforms import build_pipeline
from scenarios._cifar_common import labeled_dataset, unlabeled_dataset

TRAIN = build_pipeline(
    [
        dict(type="RandomCrop", size=8, padding=2),
        dict(type="RandomHorizontalFlip"),
        dict(type="ToTensor"),
    ]
)
EVAL = build_pipeline([dict(type="ToTensor")])


def _data(n: int = 103, offset: int = 0):
    """Images whose first pixel encodes the sample (``id % 256``), labels = the sample id."""
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8)
    ids = torch.arange(offset, offset + n)
    images[:, 0, 0, 0] = (ids % 256).to(torch.uint8)
    return images, ids


def test_view_of_subsets_and_concatenations_matches_the_items():
    images, labels = _data(50)
    ds = labeled_dataset(images, labels, TRAIN, EVAL)
    other_images, other_labels = _data(20, offset=50)
    other = labeled_dataset(other_images, other_labels, TRAIN, EVAL)
    mixed = ds.subset([40, 3, 3, 17]).concat(other.subset(range(5, 9))).eval()
    view = tensor_view(mixed)
    assert view.group == "eval" and len(view) == 8
    for k in range(len(mixed)):
        x, y, t = mixed[k]
        assert torch.equal(
            view.images[k], images[[40, 3, 3, 17]][k] if k < 4 else other_images[k + 1]
        )
        assert int(view.targets[k]) == y and int(view.task_labels[k]) == t
        assert torch.equal(EVAL(view.images[k]), x)
    assert tensor_view(ds.eval()).images is images, "a whole leaf is not copied"


def test_hidden_labels_are_not_reachable_from_a_discovery_dataset():
    images, true_labels = _data(40)
    ds = unlabeled_dataset(images, TRAIN, EVAL).subset([7, 1, 30])
    view = tensor_view(ds)
    assert view.targets.tolist() == [UNLABELED] * 3 and view.sample_indices.tolist() == [7, 1, 30]
    assert not hasattr(view, "labels")

    # no tensor anywhere under the dataset or its view equals the true labels
    seen, found = set(), []

    def walk(obj, depth=0):
        if id(obj) in seen or depth > 12:
            return
        seen.add(id(obj))
        if torch.is_tensor(obj):
            found.append(obj)
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v, depth + 1)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v, depth + 1)
        elif hasattr(obj, "__dict__"):
            for v in vars(obj).values():
                walk(v, depth + 1)

    walk(ds)
    walk(view)
    assert found and not any(
        t.shape == true_labels.shape and torch.equal(t.long(), true_labels) for t in found
    )
    batch = next(iter(iter_batches(ds, 8, train=True, shuffle=False, generator=0)))
    assert len(batch) == 4 and batch[1].tolist() == [UNLABELED] * 3
    assert batch[2].tolist() == [7, 1, 30]


def test_no_view_for_inputs_that_are_not_tensor_leaves():
    class Plain(torch.utils.data.Dataset):
        targets = [0, 1]

        def __len__(self):
            return 2

        def __getitem__(self, i):
            return torch.zeros(3, 8, 8), i

    ds = make_dataset(Plain(), EVAL, EVAL)
    assert tensor_view(ds) is None and "Plain has no in-memory tensors" in why_no_view(ds)


def test_iterator_covers_every_sample_once_per_epoch_and_is_seeded():
    images, labels = _data(103)
    ds = labeled_dataset(images, labels, TRAIN, EVAL)
    it = iter_batches(ds, 16, train=True, shuffle=True, generator=5)
    assert len(it) == 7
    epochs = []
    for _ in range(2):
        batches = list(it)
        assert [len(b[0]) for b in batches] == [16] * 6 + [7]
        seen = torch.cat([b[1] for b in batches])
        assert sorted(seen.tolist()) == list(range(103))
        x = torch.cat([b[0] for b in batches])
        assert x.dtype == torch.float32 and x.shape == (103, 3, 8, 8)
        epochs.append((seen, x))
    assert not torch.equal(epochs[0][0], epochs[1][0]), "each epoch reshuffles"
    again = iter_batches(ds, 16, train=True, shuffle=True, generator=5)
    first = list(again)
    assert torch.equal(torch.cat([b[1] for b in first]), epochs[0][0])
    assert torch.equal(torch.cat([b[0] for b in first]), epochs[0][1]), "same seed, same pixels"
    ordered = iter_batches(ds, 50, train=False, shuffle=False)
    assert torch.cat([b[1] for b in ordered]).tolist() == list(range(103))


def test_replay_loader_is_reproduced_batch_for_batch():
    data = labeled_dataset(*_data(50), TRAIN, EVAL)
    memory = labeled_dataset(*_data(12, offset=1000), TRAIN, EVAL)
    plain = ReplayDataLoader(data, memory, batch_size=16, batch_size_mem=8, shuffle=True)
    it, _ = batched_iterator_for(plain, seed=0, device="cpu")
    assert [len(b[1]) for b in it] == [len(b[1]) for b in plain] == [24, 20, 16, 2]
    # as ReplayPlugin builds it: the memory restarts until the data ends
    loader = ReplayDataLoader(
        data, memory, batch_size=16, batch_size_mem=8, shuffle=True, oversample_small_tasks=True
    )
    it, what = batched_iterator_for(loader, seed=0, device="cpu")
    assert isinstance(it, BatchIterator) and len(it) == len(loader) == 4, what
    batches = list(it)
    per_sample = list(loader)
    assert [len(b[1]) for b in batches] == [len(b[1]) for b in per_sample] == [24, 20, 24, 6]
    ids = torch.cat([b[1] for b in batches])
    assert sorted(i for i in ids.tolist() if i < 1000) == list(range(50))
    memory_ids = [i for i in ids.tolist() if i >= 1000]
    assert len(memory_ids) == 24, "the memory restarts after its last (short) batch"
    assert sorted(memory_ids) == sorted(list(range(1000, 1012)) * 2)
    assert all(b[1][:16].max() < 1000 for b in batches[:3]), "data first, then memory"


def test_eval_loader_and_fallback():
    ds = labeled_dataset(*_data(30), TRAIN, EVAL).eval()
    it, what = batched_iterator_for(SingleDatasetDataLoader(ds, batch_size=8), seed=0, device="cpu")
    assert len(it) == 4 and "ToTensor" in what
    crop = build_pipeline([dict(type="RandomResizedCrop", size=8), dict(type="ToTensor")])
    slow = labeled_dataset(*_data(30), crop, crop)
    it, what = batched_iterator_for(DataLoader(slow, batch_size=8), seed=0, device="cpu")
    assert it is None and what == "RandomResizedCrop has no batched form"


class _Strategy:
    def __init__(self, loader, model):
        self.dataloader = loader
        self.model = model
        self.device = torch.device("cpu")
        self.experience = type("E", (), {"current_experience": 2})()


def test_plugin_swaps_the_loader_logs_once_and_converts_the_model():
    ds = labeled_dataset(*_data(30), TRAIN, EVAL)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    messages = []
    plugin = BatchedDataPlugin(seed=3, log=messages.append)
    for _ in range(2):
        strategy = _Strategy(DataLoader(ds, batch_size=8, shuffle=True), model)
        plugin.before_training_exp(strategy)
        assert isinstance(strategy.dataloader, BatchIterator)
    assert messages == [
        "data path (train): batched on cpu: BatchedPipeline(RandomCrop(8x8, padding=[2, 2, 2, 2])"
        " -> RandomHorizontalFlip(p=0.5) -> ToTensor; channels_last)"
    ]
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = next(iter(strategy.dataloader))[0]
    assert x.is_contiguous(memory_format=torch.channels_last)
    crop = build_pipeline([dict(type="RandomResizedCrop", size=8), dict(type="ToTensor")])
    original = DataLoader(labeled_dataset(*_data(30), crop, crop), batch_size=8)
    strategy = _Strategy(original, model)
    plugin.before_eval_exp(strategy)
    assert strategy.dataloader is original
    assert messages[-1] == "data path (eval): per-sample (RandomResizedCrop has no batched form)"


def test_extract_matches_a_per_sample_pass():
    images, _ = _data(40)
    ds = unlabeled_dataset(images, TRAIN, EVAL).subset(list(range(39, -1, -2)))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 5))
    model.train()
    logits, features, indices = extract(model, ds, batch_size=7)
    assert model.training, "the model's mode is restored"
    assert features is None and indices.tolist() == list(range(39, -1, -2))
    with torch.no_grad():
        expected = torch.cat([model(b[0]) for b in DataLoader(ds.eval(), batch_size=7)])
    assert torch.equal(logits, expected)


def test_distributed_shards_cover_the_dataset_like_distributed_sampler():
    ds = labeled_dataset(*_data(10), TRAIN, EVAL)
    shards = []
    for rank in range(3):
        it = iter_batches(ds, 4, train=False, shuffle=True, generator=1)
        it.rank, it.world_size = rank, 3
        assert len(it) == 1
        shards.append(torch.cat([b[1] for b in it]))
    ids = torch.cat(shards).tolist()
    assert len(ids) == 12 and set(ids) == set(range(10))  # padded by wrapping, as torch does


def test_runtime_block_is_validated():
    assert parse_runtime({}) == RuntimeOptions()
    assert parse_runtime({"runtime": {"amp": "bf16", "compile": True}}).amp == "bf16"
    for block, message in [
        ({"amp": "fp8"}, "runtime.amp: expected one of"),
        ({"batched": True}, "runtime.batched: unknown key"),
        ({"compile": "yes"}, "runtime.compile: expected one of"),
    ]:
        try:
            parse_runtime({"runtime": block})
        except ConfigError as err:
            assert str(err).startswith(message)
        else:
            raise AssertionError(f"{block} accepted")
