"""Evaluate a checkpoint on a config's streams (mmpretrain's ``tools/test.py`` convention)::

    avalanche-ext-test CONFIG CHECKPOINT [--device cpu] [--out metrics.json]

CONFIG is usually the run's own ``config.py``; CHECKPOINT a checkpoint file or a run folder. Prints
the accuracy of every evaluated stream as JSON (and writes every metric to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys

from avalanche_ext.cli import guarded
from avalanche_ext.strict import atomic_write_text

__all__ = ["main"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="config file (usually <run>/config.py)")
    parser.add_argument("checkpoint", help="checkpoint file or run folder")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--out", help="write every metric to this JSON file")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> int:
        from avalanche_ext import api  # noqa: PLC0415

        result = api.evaluate(args.config, args.checkpoint, device=args.device)
        if args.out:
            atomic_write_text(args.out, json.dumps(result, indent=2))
        print(json.dumps({k: result[k] for k in ("checkpoint", "stream_accuracy")}, indent=2))
        return 0

    return guarded(body, args.debug)


if __name__ == "__main__":
    sys.exit(main())
