"""Config system: _base_ inheritance, _delete_, --cfg-options, custom_imports, validation."""

from __future__ import annotations

import textwrap

import pytest

from avalanche_ext.config import load_config, validate_config
from avalanche_ext.errors import ConfigError
from tests.conftest import SYNTHETIC_CONFIG


def _write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def test_base_inheritance_override_and_delete(tmp_path):
    cfg_path = _write(
        tmp_path / "leaf.py",
        f"""
        _base_ = ['{SYNTHETIC_CONFIG}']
        cl_strategy = dict(train_epochs=3, optimizer=dict(lr=0.2))
        scenario = dict(_delete_=True, type='SyntheticStream', num_classes=4, num_experiences=2)
    """,
    )
    cfg = load_config(cfg_path)
    assert cfg.cl_strategy.train_epochs == 3
    assert cfg.cl_strategy.optimizer.lr == 0.2
    assert cfg.cl_strategy.optimizer.momentum == 0.9, "untouched keys are inherited"
    assert "images_per_class" not in cfg.scenario, "_delete_ replaces the whole dict"
    # the transforms come from the (inherited) top-level pipelines, resolved after merging
    assert cfg.scenario.train_transform == cfg.train_pipeline
    assert cfg.loggers[0].type == "TextLogger"


def test_cfg_options_override(tmp_path):
    cfg = load_config(SYNTHETIC_CONFIG, {"cl_strategy.train_mb_size": 8, "seed": 5})
    assert cfg.cl_strategy.train_mb_size == 8 and cfg.seed == 5


def test_custom_imports_registers_user_code_without_touching_the_repo(tmp_path, monkeypatch):
    (tmp_path / "user_scenarios.py").write_text(
        textwrap.dedent("""
        from avalanche_ext.registry import PLUGINS
        from avalanche.core import SupervisedPlugin

        @PLUGINS.register_module()
        class UserCountingPlugin(SupervisedPlugin):
            def __init__(self, start=0):
                super().__init__()
                self.count = start
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg_path = _write(
        tmp_path / "c.py",
        f"""
        _base_ = ['{SYNTHETIC_CONFIG}']
        custom_imports = dict(imports=['user_scenarios'], allow_failed_imports=False)
        cl_strategy = dict(plugins=[dict(type='UserCountingPlugin', start=3)])
    """,
    )
    cfg = load_config(cfg_path)
    from avalanche_ext.builders import build_plugins

    (plugin,) = build_plugins(cfg.cl_strategy.plugins)
    assert type(plugin).__name__ == "UserCountingPlugin" and plugin.count == 3


def test_failing_custom_import_names_the_key(tmp_path):
    cfg_path = _write(
        tmp_path / "c.py",
        f"""
        _base_ = ['{SYNTHETIC_CONFIG}']
        custom_imports = dict(imports=['no_such_module_xyz'])
    """,
    )
    with pytest.raises(ConfigError, match="custom_imports.*no_such_module_xyz"):
        load_config(cfg_path)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.pop("model"), "model: missing required key"),
        (lambda c: c.__setitem__("cl_strategy", 3), "cl_strategy: expected a dict"),
        (lambda c: c.cl_strategy.__setitem__("train_epochs", 0), "cl_strategy.train_epochs"),
        (lambda c: c.cl_strategy.__setitem__("train_mb_size", True), "cl_strategy.train_mb_size"),
        (lambda c: c.__setitem__("metrics", [dict(num_classes=3)]), r"metrics\[0\]"),
        (
            lambda c: c.__setitem__("checkpoint_config", dict(interval="1")),
            "checkpoint_config.interval",
        ),
        (lambda c: c.scenario.pop("type"), "scenario.type"),
    ],
)
def test_validation_names_the_key(synthetic_cfg, mutate, message):
    mutate(synthetic_cfg)
    with pytest.raises(ConfigError, match=message):
        validate_config(synthetic_cfg)


def test_syntax_error_names_the_file(tmp_path):
    bad = _write(tmp_path / "broken.py", "model = dict(\n")
    with pytest.raises(ConfigError, match="broken.py"):
        load_config(bad)
