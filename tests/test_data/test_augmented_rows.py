"""AugmentedRows: the views that plugins draw beside the minibatch (the novel head's second view,
replayed known exemplars) are of the rows asked for, on either path, and follow their seed."""

from __future__ import annotations

import torch

from avalanche_ext.data.augmented_rows import AugmentedRows
from avalanche_ext.scenario import make_dataset
from avalanche_ext.transforms import build_pipeline
from scenarios._cifar_common import labeled_dataset

TRAIN = build_pipeline(
    [
        dict(type="RandomCrop", size=8, padding=2),
        dict(type="RandomHorizontalFlip"),
        dict(type="ToTensor"),
    ]
)
PLAIN = build_pipeline([dict(type="ToTensor")])
MODEL = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 3))


def _subset(train_transform):
    images = torch.randint(0, 256, (30, 3, 8, 8), dtype=torch.uint8)
    order = [29, 4, 4, 11, 0, 17]
    return labeled_dataset(images, torch.arange(30), train_transform, PLAIN).subset(order).train()


def test_batched_rows_are_the_rows_asked_for_and_follow_the_seed():
    ds = _subset(PLAIN)  # no random step: a view must equal the dataset's own item
    views = AugmentedRows(ds, MODEL, "cpu", seed=3)
    assert views.batched
    rows = torch.tensor([5, 0, 2, 2])
    assert torch.equal(views(rows, "cpu"), torch.stack([ds[int(r)][0] for r in rows]))
    assert views.targets().tolist() == [29, 4, 4, 11, 0, 17]

    ds = _subset(TRAIN)
    first, again = AugmentedRows(ds, MODEL, "cpu", 3), AugmentedRows(ds, MODEL, "cpu", 3)
    a, b = first(rows, "cpu"), again(rows, "cpu")
    assert torch.equal(a, b), "one seed, one sequence of views"
    assert not torch.equal(a, first(rows, "cpu")), "each call draws fresh augmentations"
    assert not torch.equal(a, AugmentedRows(ds, MODEL, "cpu", 4)(rows, "cpu"))


def test_datasets_without_a_tensor_view_use_their_own_transforms():
    class Plain(torch.utils.data.Dataset):
        targets = [2, 0, 1]

        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.full((3, 8, 8), float(i)), self.targets[i]

    ds = make_dataset(Plain(), PLAIN, PLAIN)
    views = AugmentedRows(ds, MODEL, "cpu", seed=0)
    assert not views.batched and views.targets().tolist() == [2, 0, 1]
    x = views(torch.tensor([2, 0]), "cpu")
    assert x[:, 0, 0, 0].tolist() == [2.0, 0.0]
