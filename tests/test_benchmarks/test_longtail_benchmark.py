"""benchmarks/longtail.py: which configs it runs, the budget it applies, the table and RESULTS.md section."""

from __future__ import annotations

import pytest

from avalanche_ext.config import load_config


@pytest.fixture
def bench(load_benchmark):
    return load_benchmark("longtail")


def test_every_cpu_config_ce_first(bench):
    names = [p.name.split("_", 1)[0] for p in bench.cpu_configs()]
    assert names[0] == "ce" and {"balanced-softmax", "ldam-drw", "crt"} <= set(names)
    assert all("_cpu_" in p.name for p in bench.cpu_configs())
    assert [p.name.split("_", 1)[0] for p in bench.cpu_configs(["ce", "crt"])] == ["ce", "crt"]


def test_the_budget_overrides_every_config_the_same_way(bench):
    options = bench.budget_options(epochs=2, depth=8, n_max=100, test_subset=5)
    for path in bench.cpu_configs(["ce", "ldam-drw"]):
        cfg = load_config(path, dict(options))
        assert cfg.cl_strategy.train_epochs == 2 and cfg.model.backbone.depth == 8
        assert cfg.scenario.n_max == 100 and cfg.scenario.test_subset == 5


def test_table_and_section_replacement(bench, tmp_path):
    row = {"top-1": 0.5, "many": 0.75, "medium": None, "few": 0.0123, "GM": 0.0, "HM": 0.0}
    row.update({"lowest recall": 0.0, "time (s)": 12.4})
    text = bench.table({"ce": row})
    assert "| ce | 50.00 | 75.00 | - | 1.23 | 0.00 | 0.00 | 0.00 | 12 |" in text
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Another section\nkeep me\n")
    bench.write_section(results, "## Long-tail\nfirst")
    bench.write_section(results, "## Long-tail\nsecond")
    content = results.read_text()
    assert "keep me" in content and "second" in content and "first" not in content
    assert content.count(bench.BEGIN) == 1


def test_results_row_reads_results_json(bench):
    results = {
        "final": {"stream_accuracy": 0.4},
        "long_tail": {"many_acc": 0.6, "medium_acc": 0.4, "few_acc": 0.1, "geometric_mean": 0.2},
        "timing": {"total_s": 3.0},
    }
    row = bench.results_row(results)
    assert row["top-1"] == 0.4 and row["few"] == 0.1 and row["GM"] == 0.2 and row["HM"] is None
