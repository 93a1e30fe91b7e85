"""Your own rule from the command line: --plugin (a file or a module), the distlab.rules entry points,
`distlab study NAME --rule R`, and README's "Add your own rule" example, run as written."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from distlab import plugins, rules, studies
from distlab.cli import app

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _own_registry(monkeypatch):
    """Each test registers into a copy of the registry: the plugins' rules must not leak into other tests of the
    same worker (tests/test_rules.py checks that the registry holds exactly the design's names)."""
    monkeypatch.setattr(rules, "_REGISTRY", dict(rules._REGISTRY))
    monkeypatch.setattr(plugins, "_LOADED_ENTRY_POINTS", set())


def _flat(output: str) -> str:
    """The output without rich's box and line wrapping."""
    return " ".join(output.replace("│", " ").split())


def _rule_source(name: str) -> str:
    return f"from distlab import rules\nrules.register(rules.Rule({name!r}, loss='kl', doc='a plugin test rule'))\n"


def test_a_plugin_file_registers_its_rules_once(tmp_path):
    path = tmp_path / "plugin_file_rule.py"
    path.write_text(_rule_source("plugin-file-rule"))
    plugins.load_plugins([str(path)], entry_points=False)
    assert rules.get("plugin-file-rule").loss == "kl" and "plugin-file-rule+r" in rules.names()
    plugins.load_plugins([str(path), str(path)], entry_points=False)  # loaded once: no "already registered"


def test_a_plugin_module_on_sys_path(tmp_path, monkeypatch):
    (tmp_path / "plugin_module_rule.py").write_text(_rule_source("plugin-module-rule"))
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.load_plugin("plugin_module_rule")
    assert "plugin-module-rule" in rules.names()


def test_plugin_errors_name_the_plugin_and_the_cause(tmp_path):
    with pytest.raises(plugins.PluginError, match="'nowhere.py': no such file"):
        plugins.load_plugin("nowhere.py")
    with pytest.raises(plugins.PluginError, match="no module named 'no_such_plugin_module' on sys.path"):
        plugins.load_plugin("no_such_plugin_module")
    broken = tmp_path / "broken.py"
    broken.write_text("from distlab import rules\nrules.register(rules.Rule('broken', loss='l3'))\n")
    with pytest.raises(plugins.PluginError, match="'.*broken.py' failed while loading: ValueError: .*unknown loss 'l3'"):
        plugins.load_plugin(str(broken))
    not_python = tmp_path / "rule.txt"
    not_python.write_text("")
    with pytest.raises(plugins.PluginError, match="must be a .py file"):
        plugins.load_plugin(str(not_python))


def test_installed_entry_points_of_the_distlab_rules_group_load(tmp_path, monkeypatch):
    """A package that declares `[project.entry-points."distlab.rules"]` (here: a dist-info on sys.path, which is
    what an install writes) has its rules registered by every command that takes --plugin."""
    (tmp_path / "entry_point_rules.py").write_text(
        _rule_source("entry-point-rule") + "def more():\n" + textwrap.indent(_rule_source("entry-point-callable-rule"), "    "))
    info = tmp_path / "entry_point_rules-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: entry-point-rules\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[distlab.rules]\nmodule = entry_point_rules\ncallable = entry_point_rules:more\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = CliRunner().invoke(app, ["rules"])
    assert result.exit_code == 0, result.output
    listed = [line.split()[0] for line in result.output.splitlines()]
    assert {"entry-point-rule", "entry-point-rule+r", "entry-point-callable-rule"} <= set(listed)
    assert plugins.load_entry_points() == []  # each entry point loads once per process


def test_rules_command_loads_a_plugin_and_refuses_a_missing_one(tmp_path):
    path = tmp_path / "cli_rule.py"
    path.write_text(_rule_source("cli-listed-rule"))
    listed = CliRunner().invoke(app, ["rules", "--plugin", str(path)])
    assert listed.exit_code == 0 and "cli-listed-rule+r" in listed.output
    missing = CliRunner().invoke(app, ["rules", "--plugin", str(tmp_path / "absent.py")])
    assert missing.exit_code == 2 and "Invalid value for --plugin" in _flat(missing.output)


def test_study_rule_is_refused_where_a_study_has_no_rule_axis_and_names_the_valid_choices(tmp_path):
    with_axis = studies.studies_with_rule_axis()
    assert set(with_axis) == {"oscillation", "control", "actions", "noisy-teacher", "chain", "exploration", "mujoco-rules"}
    for args, expected in [
        (["multi-teacher", "--rule", "rl"], f"study 'multi-teacher' has no rule axis, so it takes no --rule; studies with "
                                            f"one: {', '.join(with_axis)}"),
        (["control", "--rule", "rl", "--rule", "on-policy"], "study 'control' runs one rule at a time"),
        (["chain", "--rule", "not-a-rule"], "unknown rule 'not-a-rule'; valid rules: teacher, on-policy"),
    ]:
        result = CliRunner().invoke(app, ["study", *args, "--smoke", "--out", str(tmp_path)])
        assert result.exit_code == 2 and expected in _flat(result.output), result.output
    assert not any(tmp_path.iterdir())


def test_with_rules_sets_the_axis_of_each_kind_of_study():
    from distlab.studies import chain, control

    assert studies.with_rules("control", control.CONFIGS["smoke"], ["rl"]).rule == "rl"
    config = studies.with_rules("chain", chain.CONFIGS["smoke"], ["rl", "on-policy+r"])
    assert config.rules == ("rl", "on-policy+r") and {c["rule"] for c in chain.cells(config)} == {"rl", "on-policy+r"}


def test_train_loads_plugins_before_it_checks_the_rule(tmp_path):
    """`distlab train --rule` must name a registered rule: without the plugin the user's rule is refused as an
    argument error (exit 2); with it the configuration is accepted, and the run gets as far as its run directory
    (--resume of a directory that does not exist: exit 1, "cannot resume"), so no training is needed here."""
    path = tmp_path / "train_rule.py"
    path.write_text(_rule_source("train-plugin-rule"))
    args = ["train", "--env", "Pendulum-v1", "--method", "piekd", "--k", "2", "--rule", "train-plugin-rule",
            "--out", str(tmp_path / "run"), "--resume"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "unknown rule 'train-plugin-rule'" in _flat(refused.output), refused.output
    accepted = CliRunner().invoke(app, [*args, "--plugin", str(path)])
    assert accepted.exit_code == 1 and "cannot resume" in _flat(accepted.output), accepted.output


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def test_the_readme_add_your_own_rule_example_runs_as_written(tmp_path):
    """README, "Add your own rule": write the plugin file it shows, run each `distlab` command of its shell
    block (the study at smoke scale instead of --quick, with --workers 1: test_runner.py checks that user rules reach
    workers; `figure` is left out: it draws whatever the study wrote); the study's table holds the user's rule only."""
    section = _readme_section("Add your own rule")
    python = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    plugin_file = re.match(r"# (\S+\.py)", python).group(1)
    (tmp_path / plugin_file).write_text(python)
    commands = [shlex.split(line, comments=True) for line in re.search(r"```bash\n(.*?)```", section, re.S).group(1).splitlines()]
    commands = [c for c in commands if c and c[0] == "distlab" and c[1] != "figure"]
    assert [c[1] for c in commands] == ["rules", "study"]
    out = tmp_path / "results"
    for command in commands:
        args = command[1:]
        if args[0] == "study":
            args = ["--smoke" if a == "--quick" else a for a in args] + ["--out", str(out), "--workers", "1"]
        run = subprocess.run([sys.executable, "-m", "distlab", *args], cwd=tmp_path, capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        if args[0] == "rules":
            assert "my-rule " in run.stdout and "my-rule+r" in run.stdout
    study, rule = commands[1][2], commands[1][commands[1].index("--rule") + 1]
    table = pd.read_parquet(studies.results_path(out, study, "smoke"))
    assert set(table["rule"]) == {rule} and len(table) > 0
