"""Reports of runs: derived metrics for results.json, figures, report.md/html and run comparisons.

Reads only the results dict (docs/contracts.md); ``tools/report.py`` is the command line over it.
"""

from avalanche_ext.report.compare import compare_runs, load_results, resolve_run_dir
from avalanche_ext.report.plots import (
    plot_accuracy_curves,
    plot_accuracy_matrix,
    plot_binned_score_histograms,
    plot_class_counts,
    plot_confusion_matrix,
    plot_per_class_accuracy,
    plot_score_histograms,
)
from avalanche_ext.report.render import build_document, write_report
from avalanche_ext.report.summarize import summarize

__all__ = [
    "summarize",
    "write_report",
    "build_document",
    "compare_runs",
    "load_results",
    "resolve_run_dir",
    "plot_accuracy_matrix",
    "plot_confusion_matrix",
    "plot_per_class_accuracy",
    "plot_class_counts",
    "plot_score_histograms",
    "plot_binned_score_histograms",
    "plot_accuracy_curves",
]
