"""The plain baseline of novel-class discovery: one PyTorch script, no framework, same data.

It trains a CIFAR ResNet on the 80 long-tailed known classes of ``CIFAR100KnownNovelLT`` (the same
split, seed and images as the configs), scores known-vs-novel with max-softmax, and clusters the
novel test features with k-means (k = 20). Only the data split comes from the project (so both see
the same images); training, augmentation, scoring and clustering are written out here, the way a
researcher would check the pipeline by hand. Used by ``benchmarks/ncd_ablation.py``.

    python benchmarks/ncd_plain_baseline.py --epochs 8 --depth 32
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import roc_auc_score

import avalanche_ext  # noqa: F401  (stack fixes)
from avalanche_ext.models.cifar_resnet import CifarResNet
from scenarios._cifar_common import load_image_source
from scenarios.cifar100_known_novel import plan_known_novel

MEAN = torch.tensor([0.5071, 0.4865, 0.4409]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.2673, 0.2564, 0.2762]).view(1, 3, 1, 1) * 255


def load_split(seed: int = 0, imbalance_ratio: float = 0.1, train_subset: int | None = None):
    """Base (known, labeled) train images, known/novel test images, discovery images + labels,
    exactly as ``CIFAR100KnownNovelLT`` (step tail, split seed 0) selects them."""
    src = load_image_source("cifar100", None, None, "scenario")
    plan = plan_known_novel(
        src.train_labels,
        src.test_labels,
        src.num_classes,
        imbalance_type="step",
        imbalance_ratio=imbalance_ratio,
        train_subset=train_subset,
        seed=0,
    )
    original = plan.known_original + plan.novel_original
    remap = torch.full((src.num_classes,), -1, dtype=torch.long)
    remap[torch.tensor(original)] = torch.arange(len(original))
    x_tr = src.train_images[plan.base_indices]
    y_tr = remap[src.train_labels[plan.base_indices]]
    test_idx = torch.cat([plan.test_indices[c] for c in range(len(original))])
    x_te, y_te = src.test_images[test_idx], remap[src.test_labels[test_idx]]
    disc = plan.discovery_indices[0]
    return x_tr, y_tr, x_te, y_te, src.train_images[disc], remap[src.train_labels[disc]]


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random 32x32 crop of the 4-padded image and a horizontal flip, batched."""
    n = x.shape[0]
    padded = F.pad(x, (4, 4, 4, 4))
    dx = torch.randint(0, 9, (n,), generator=gen)
    dy = torch.randint(0, 9, (n,), generator=gen)
    rows = (dy.view(n, 1) + torch.arange(32)).view(n, 1, 32, 1).expand(n, 3, 32, 40)
    out = padded.gather(2, rows)
    cols = (dx.view(n, 1) + torch.arange(32)).view(n, 1, 1, 32).expand(n, 3, 32, 32)
    out = out.gather(3, cols)
    flip = torch.rand(n, generator=gen) < 0.5
    return torch.where(flip.view(n, 1, 1, 1), out.flip(3), out)


def normalize(x: torch.Tensor) -> torch.Tensor:
    return ((x.float() - MEAN) / STD).contiguous(memory_format=torch.channels_last)


class Net(torch.nn.Module):
    def __init__(self, depth: int, width: int, num_classes: int):
        super().__init__()
        self.backbone = CifarResNet(depth=depth, base_channels=width)
        self.fc = torch.nn.Linear(width * 4, num_classes)

    def forward(self, x):
        feats = self.backbone(x)[0].mean((2, 3))
        return self.fc(feats), feats


@torch.inference_mode()
def predict(model: Net, x: torch.Tensor, batch: int = 1000):
    model.eval()
    outs = [model(normalize(x[i : i + batch])) for i in range(0, len(x), batch)]
    return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])


def hungarian_acc(y: np.ndarray, c: np.ndarray) -> float:
    k = max(y.max(), c.max()) + 1
    w = np.zeros((k, k), dtype=np.int64)
    np.add.at(w, (c, y), 1)
    r, col = linear_sum_assignment(-w)
    return float(w[r, col].sum() / len(y))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--depth", type=int, default=32)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0, help="training seed (the split is fixed)")
    ap.add_argument("--imbalance-ratio", type=float, default=0.1)
    ap.add_argument("--train-subset", type=int, default=None)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    x_tr, y_tr, x_te, y_te, x_d, y_d = load_split(0, args.imbalance_ratio, args.train_subset)
    num_known = int(y_tr.max()) + 1
    model = Net(args.depth, args.width, num_known).to(memory_format=torch.channels_last)
    steps = args.epochs * (len(x_tr) // args.batch)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    for _ in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_tr), generator=gen)
        for s in range(len(x_tr) // args.batch):
            idx = order[s * args.batch : (s + 1) * args.batch]
            logits, _ = model(normalize(augment(x_tr[idx], gen)))
            loss = F.cross_entropy(logits, y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    train_s = time.time() - t0
    logits, feats = predict(model, x_te)
    known = y_te < num_known
    known_acc = float((logits[known].argmax(1) == y_te[known]).float().mean())
    msp = logits.softmax(1).amax(1)
    auroc_test = float(roc_auc_score((~known).numpy(), (-msp).numpy()))
    nf = F.normalize(feats[~known], dim=1).numpy()
    clusters = KMeans(n_clusters=20, n_init=10, random_state=args.seed).fit_predict(nf)
    cluster_acc = hungarian_acc(y_te[~known].numpy() - num_known, clusters)
    # The same on the discovery training images (the samples the pipeline's gate and clustering
    # see), with the permutation chance of that clustering.
    d_logits, d_feats = predict(model, x_d)
    d_novel = y_d >= num_known
    auroc = float(roc_auc_score(d_novel.numpy(), (-d_logits.softmax(1).amax(1)).numpy()))
    d_true = y_d[d_novel].numpy() - num_known
    d_clusters = KMeans(n_clusters=20, n_init=10, random_state=args.seed).fit_predict(
        F.normalize(d_feats[d_novel], dim=1).numpy()
    )
    rng = np.random.default_rng(0)
    chance = float(np.mean([hungarian_acc(d_true, rng.permutation(d_clusters)) for _ in range(20)]))
    out = {
        "known_acc": known_acc,
        "msp_auroc": auroc,
        "msp_auroc_test": auroc_test,
        "novel_cluster_acc_test": cluster_acc,
        "novel_cluster_acc_discovery": hungarian_acc(d_true, d_clusters),
        "cluster_chance": chance,
        "train_s": train_s,
        "total_s": time.time() - t0,
        "args": vars(args),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
