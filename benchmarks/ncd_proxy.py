"""Choosing discovery settings on a proxy task: known classes posing as novel, scored with labels.

    python benchmarks/ncd_proxy.py [--config CONFIG] [--seed 1] [--out DIR]
        [--only VARIANT ...] [--base-checkpoint RUN/checkpoints/experience_1.pth]
        [--cfg-options KEY=VALUE ...]

The label-free estimate that chooses the flagship's operating point reads the new-class side from
the head's confidence on the unlabeled discovery images, which overrates it (0.47-0.51 where the
test gives 0.25-0.34). This proxy measures that side instead, without touching a novel class or a
test image:

* Data: the TRAINING images of the 80 known classes only (CIFAR-100 ids 0..79), 450 per class for
  training and 50 per class held out as the proxy's evaluation split (``val/``), written once as
  an image folder. The 20 real novel classes and the CIFAR-100 test set are never read.
* Task: the flagship's recipe unchanged except the class split: the last 16 of those 80 classes
  pose as novel (their labels hidden from the pipeline, as in the real run), the other 64 are
  known, so the evaluation prior is 80 % known / 20 % novel like the real test; k = 16.
* Score: old / new / HM on the proxy's evaluation split, FRoST's task-agnostic convention (the
  same code as the real runs). Every setting the proxy ranks is compared on one shared base model.

The rows are the ablation's variants (``benchmarks/ncd_ablation.py``), run by its code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import ncd_ablation  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from avalanche_ext.datasets.cifar import load_cifar100  # noqa: E402

KNOWN = 80  # CIFAR-100 ids 0..79: the real protocol's known classes
PROXY_NOVEL = 16  # of them, the last 16 pose as novel (80 / 20 evaluation prior, like the test)
PER_CLASS_VAL = 50
DEFAULT_VARIANTS = [
    "config as shipped",
    "no known exemplar replay",
    "operating point: HM within a 5-point old-class budget",
]


def write_proxy_folder(out: Path, seed: int = 0) -> Path:
    """Writes ``out/{train,val}/cXX/*.png`` from CIFAR-100's training images of ids 0..79 (a seeded
    ``PER_CLASS_VAL`` per class to ``val/``); returns ``out``. Skipped when already complete."""
    done = out / "complete"
    if done.is_file():
        return out
    data = load_cifar100()
    rng = np.random.default_rng(seed)
    labels = data.train_labels.numpy()
    for c in range(KNOWN):
        idx = np.flatnonzero(labels == c)
        val = set(rng.choice(idx, PER_CLASS_VAL, replace=False).tolist())
        for split in ("train", "val"):
            (out / split / f"c{c:02d}").mkdir(parents=True, exist_ok=True)
        for i in idx:
            split = "val" if int(i) in val else "train"
            image = data.train_images[i].permute(1, 2, 0).numpy()
            Image.fromarray(image).save(out / split / f"c{c:02d}" / f"{i:05d}.png")
    done.write_text("80 known CIFAR-100 classes, train images only\n")
    return out


def _positions(cfg_path: str, *kinds: str) -> list[int]:
    """Index of the plugin of each type in ``kinds`` in the config's ``cl_strategy.plugins``."""
    listed = [p["type"] for p in ncd_ablation.load_config(cfg_path).cl_strategy.plugins]
    missing = [kind for kind in kinds if kind not in listed]
    if missing:
        print(f"error: {cfg_path}: cl_strategy.plugins has no {missing[0]}", file=sys.stderr)
        raise SystemExit(2)
    return [listed.index(kind) for kind in kinds]


def proxy_overrides(folder: Path, cfg_path: str = ncd_ablation.DEFAULT_CONFIG) -> dict:
    """The config's keys that make it the proxy task (data, class split, k); the gate and the
    clustering plugin are found by type."""
    gate, clustering = _positions(cfg_path, ncd_ablation.GATE, ncd_ablation.CLUSTER)
    return {
        "scenario.dataset": str(folder),
        "scenario.novel_classes": "last",
        "scenario.num_novel": PROXY_NOVEL,
        "model.head.num_classes": KNOWN - PROXY_NOVEL,
        f"cl_strategy.plugins.{gate}.score_kwargs.k": PROXY_NOVEL,
        f"cl_strategy.plugins.{clustering}.num_clusters": PROXY_NOVEL,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=ncd_ablation.DEFAULT_CONFIG)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="work_dirs/benchmarks/ncd_proxy")
    ap.add_argument("--only", nargs="+", default=DEFAULT_VARIANTS, metavar="VARIANT")
    ap.add_argument("--base-checkpoint", help="experience_1.pth of an earlier proxy run")
    ncd_ablation.add_cfg_options(ap)
    args = ap.parse_args(argv)
    out = Path(args.out)
    folder = write_proxy_folder(out / "data")
    rows = ncd_ablation.run_seed(
        args.config,
        args.seed,
        out / f"seed_{args.seed}",
        {**proxy_overrides(folder, args.config), **args.cfg_options},
        args.base_checkpoint,
        plain=False,
        only=args.only,
    )
    print(ncd_ablation.table([rows]))
    print(f"\nMachine: {ncd_ablation.cpu_model()}. Proxy seed {args.seed}; data {folder}.")
    (out / f"seed_{args.seed}" / "proxy.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
