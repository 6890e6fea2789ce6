"""Tests of report.md / report.html rendering from the recorded results.json and from sparse ones.

The HTML must be self-contained: every figure embedded, nothing fetched.
"""

from __future__ import annotations

import re

from PIL import Image

from avalanche_ext.report import write_report

__all__: list[str] = []


def test_full_report_from_fixture(example_results, tmp_path):
    artifacts = write_report(example_results, str(tmp_path))
    figures = [
        "accuracy_matrix",
        "confusion_matrix",
        "per_class_accuracy",
        "class_counts",
        "gate_scores",
    ]
    assert set(artifacts) == {f"{name}_png" for name in figures} | {"report_md", "report_html"}
    for name in figures:
        path = tmp_path / artifacts[f"{name}_png"]
        assert path.stat().st_size > 1000
        Image.open(path).verify()
    assert example_results["artifacts"] == artifacts  # ready to be saved in results.json

    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    for heading in (
        "## Run",
        "## Accuracy matrix",
        "## Streaming summary",
        "## Final accuracy and forgetting",
        "## Per-class accuracy",
        "## Confusions",
        "## Long tail",
        "## Novel-class discovery",
        "## Timing",
    ):
        assert heading in md
    assert "| 2 | 74.00% | 45.25% | 28.50% |" in md  # the last row of R
    assert "| in_domain | 58.50% |" in md  # (0.8125 + 0.6575 + 0.285) / 3
    # 0.13875 (see test_summarize_fixture_by_hand) is 0.138749999... in binary floating point
    assert "| average_forgetting | 13.87% |" in md
    assert "| horse (7) | deer (4) | 40 | 40.00% |" in md  # the largest off-diagonal cell
    discovery = example_results["discovery"]
    assert discovery["convention_text"] in md
    assert "Update triggered: 412 pooled >= trigger_size 100." in md
    # every convention beside its no-discovery floor, and the HM column (the fixture predates HM)
    assert (
        "| FRoST task-agnostic (primary) | 58.12% (floor 60.00%, chance n/a) "
        "| 36.50% (floor 0.00%, chance n/a) | 53.80% (floor 48.00%, chance n/a) |" in md
    )
    assert "| convention | old | new | all | HM (old, new) |" in md
    assert "| novel test images predicted as a new id | 61.20% |" in md
    assert (
        "| cluster accuracy before the update (k-means), all novel discovery samples | 41.50% |"
        in md
    )
    assert "|   permutation chance at that sample size | 23.10% |" in md
    assert "| gate auroc | 82.35% |" in md
    assert "![confusion matrix](figures/confusion_matrix.png)" in md
    assert "nan" not in md.lower().replace("banana", "")

    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == len(figures)
    assert not re.search(r"<(script|link)\b|src=\"(?!data:)|https?://", html)


def test_a_run_that_discovered_nothing_says_so(example_results, tmp_path):
    discovery = example_results["discovery"]
    discovery["triggered"] = False
    discovery["reason"] = "update not triggered: 79 pooled < trigger_size 100"
    write_report(example_results, str(tmp_path))
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "**Discovery did not happen: update not triggered: 79 pooled < trigger_size 100.**" in md
    assert "Update triggered" not in md


def test_a_run_with_known_exemplars_says_it_is_not_exemplar_free(example_results, tmp_path):
    write_report(example_results, str(tmp_path / "plain"))
    assert "exemplar" not in (tmp_path / "plain" / "report.md").read_text(encoding="utf-8")
    example_results["known_exemplars"] = {"images": 1600, "classes": 80, "per_class": 20}
    write_report(example_results, str(tmp_path / "kept"))
    md = (tmp_path / "kept" / "report.md").read_text(encoding="utf-8")
    assert "Not exemplar-free: the update replayed 1600 labeled images of 80 known classes" in md


def test_sparse_results_render_without_crashing(tmp_path):
    assert write_report({}, str(tmp_path / "empty")) == {
        "report_md": "report.md",
        "report_html": "report.html",
    }
    one = {"accuracy_matrix": [[0.8]], "final": {"stream_accuracy": 0.8, "stream_forgetting": None}}
    artifacts = write_report(one, str(tmp_path / "one"))
    assert set(artifacts) == {"accuracy_matrix_png", "report_md", "report_html"}
    md = (tmp_path / "one" / "report.md").read_text(encoding="utf-8")
    assert "| next_domain | n/a |" in md and "| final stream forgetting | n/a |" in md


def test_class_without_test_samples_and_raw_gate_scores(example_results, tmp_path):
    example_results["per_class_accuracy"][3] = None
    gate = example_results["discovery"]["gate"]
    del gate["histogram"]
    gate["known_scores"], gate["novel_scores"] = [0.9, 0.8, 0.7, 0.95], [0.2, 0.4, 0.6]
    del example_results["confusion_matrix"]
    artifacts = write_report(example_results, str(tmp_path))
    assert "gate_scores_png" in artifacts and "confusion_matrix_png" not in artifacts
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "Mean over 9 classes with test samples" in md and "## Confusions" not in md


def test_an_estimated_k_shows_its_range_and_a_censored_one_says_so(example_results, tmp_path):
    discovery = example_results["discovery"]
    discovery.update(k_source="estimated", num_discovered=10, k_range=[10, 40])
    discovery["k_range_edge"] = "lower"
    write_report(example_results, str(tmp_path))
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "estimated from the data (silhouette over k = 10..40); it is the lower end" in md
    assert "widen k_range" in md
