"""Classify images or a folder with a trained run::

    avalanche-ext-infer RUN_OR_CHECKPOINT IMAGE_OR_FOLDER [...] [--topk 5] [--json]

Prints, per image, the top-k classes with names and probabilities; for a discovery run also the
novelty score, whether the gate would pool the image, and the discovered id with its mapped class.
A folder is read in sorted order and predicted in batches.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from avalanche_ext.cli import guarded
from avalanche_ext.errors import ConfigError
from avalanche_ext.images import IMAGE_SUFFIXES

__all__ = ["collect_images", "format_prediction", "main"]


def collect_images(paths: list[str]) -> list[Path]:
    """Files as given, and the image files of folders (sorted, not recursive).

    Raises:
        ConfigError: a path that does not exist, or nothing to classify.
    """
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES))
        elif p.is_file():
            out.append(p)
        else:
            raise ConfigError(f"{p}: no such image or folder")
    if not out:
        raise ConfigError(f"{' '.join(paths)}: no images found ({', '.join(IMAGE_SUFFIXES)})")
    return out


def format_prediction(pred) -> str:
    """One readable line per image."""
    top = ", ".join(f"{name} {p:.3f}" for _, name, p in pred.topk)
    line = f"{pred.source}: {top}"
    if pred.novelty_score is not None:
        line += f" | novelty {pred.novelty_score:.3f}"
        if pred.pooled is not None:
            line += " (pooled)" if pred.pooled else " (not pooled)"
    if pred.discovered_id is not None:
        mapped = pred.mapped_name or "unmapped"
        line += f" | discovered id {pred.discovered_id} -> {mapped}"
    return line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a run folder or a checkpoint file")
    parser.add_argument("images", nargs="+", help="image files and/or folders of images")
    parser.add_argument("--topk", type=int, default=5, help="classes listed per image (5)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--json", action="store_true", help="one JSON list instead of lines")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> int:
        from avalanche_ext import api  # noqa: PLC0415

        files = collect_images(args.images)
        predictor = api.load_model(args.model, device=args.device)
        preds = predictor.predict(files, topk=args.topk, batch_size=args.batch_size)
        if args.json:
            print(json.dumps([p.to_dict() for p in preds], indent=2))
        else:
            for pred in preds:
                print(format_prediction(pred))
        return 0

    return guarded(body, args.debug)


if __name__ == "__main__":
    sys.exit(main())
