"""Derived blocks of results.json (``streaming``, ``long_tail``) computed from the recorded raw data.

The runner calls :func:`summarize` before writing results.json; ``tools/report.py`` calls it again.
"""

from __future__ import annotations

from typing import Any

from avalanche_ext.metrics.long_tail import long_tail_summary
from avalanche_ext.metrics.streaming import accuracy_matrix, streaming_summary
from avalanche_ext.utils.jsonable import to_jsonable

__all__ = ["summarize", "long_tail_options"]


def long_tail_options(config: dict[str, Any] | None) -> dict[str, Any]:
    """Keyword arguments of :func:`long_tail_summary` from ``results["long_tail_config"]``.

    Accepts ``many_threshold`` / ``few_threshold`` (or the short ``many`` / ``few``) and
    ``split_by_tail``; unknown keys are ignored so that other parts can record more there.

    Args:
        config: the ``long_tail_config`` block (None or empty = the defaults 100 / 20 / automatic).

    Returns:
        dict[str, Any]: keyword arguments for :func:`long_tail_summary`.
    """
    config = config or {}
    options: dict[str, Any] = {}
    for key, short in (("many_threshold", "many"), ("few_threshold", "few")):
        value = config.get(key, config.get(short))
        if value is not None:
            options[key] = int(value)
    if "split_by_tail" in config:
        options["split_by_tail"] = config["split_by_tail"]
    return options


def _test_sizes(results: dict[str, Any], num_test: int) -> list[int] | None:
    """Samples per test experience from ``scenario.test_stream``, when recorded for every column."""
    stream = (results.get("scenario") or {}).get("test_stream") or []
    sizes = [exp.get("size") for exp in stream if isinstance(exp, dict)]
    if len(sizes) != num_test or any(not isinstance(s, int) for s in sizes):
        return None
    return sizes


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Adds the derived blocks to a results dict, in place, and makes the whole dict strict JSON.

    - ``streaming`` from ``accuracy_matrix`` (see :func:`streaming_summary`); its
      ``average_accuracy`` is weighted by the test experiences' sizes when ``scenario.test_stream``
      records them, so it equals Avalanche's stream accuracy.
    - ``long_tail`` when ``scenario.train_class_counts`` and ``per_class_accuracy`` exist, with the
      thresholds of ``results.get("long_tail_config", {})`` (see :func:`long_tail_options`); in a
      discovery run over the known classes only (``scenario.novel_classes`` left out).
    - ``discovery`` and every other block are left as they are (only converted to plain JSON).

    Every value is passed through :func:`to_jsonable`: numpy / torch numbers become python
    numbers and NaN / inf become None, so ``json.dumps(results, allow_nan=False)`` succeeds.

    Args:
        results: a results dict following docs/contracts.md (blocks may be missing).

    Returns:
        dict[str, Any]: the same dict object.
    """
    for key in list(results):
        results[key] = to_jsonable(results[key])

    matrix = results.get("accuracy_matrix")
    if matrix:
        num_test = accuracy_matrix(matrix).shape[1]
        results["streaming"] = to_jsonable(
            streaming_summary(matrix, _test_sizes(results, num_test))
        )

    counts = (results.get("scenario") or {}).get("train_class_counts")
    per_class = results.get("per_class_accuracy")
    if counts and per_class:
        options = long_tail_options(results.get("long_tail_config"))
        per_class, counts, keep = _labelled_classes(results, per_class, counts)
        block = long_tail_summary(per_class, counts, **options)
        if keep is not None:
            if block.get("lowest_recall_class") is not None:
                block["lowest_recall_class"] = keep[int(block["lowest_recall_class"])]
            block["groups"] = {k: [keep[i] for i in v] for k, v in block["groups"].items()}
            block["classes"] = (
                "known (labelled) classes only: the novel classes arrived unlabeled and are "
                "scored in the discovery block"
            )
        results["long_tail"] = to_jsonable(block)
    return results


def _labelled_classes(results: dict[str, Any], per_class: list, counts: list):
    """The classes a long-tail split is about: in a discovery run only the known ones. The novel
    classes' training images arrived unlabeled (hundreds each), so counting them as many-shot
    classes would fill the head group with classes nobody labelled, and with them the head/tail
    split itself would move."""
    scenario = results.get("scenario") or {}
    novel = set(scenario.get("novel_classes") or [])
    if not novel or scenario.get("hide_novel_labels") is not True:
        return per_class, counts, None
    keep = [c for c in range(min(len(per_class), len(counts))) if c not in novel]
    return [per_class[c] for c in keep], [counts[c] for c in keep], keep
