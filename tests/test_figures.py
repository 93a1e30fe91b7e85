"""Figure scripts render from tiny results tables; the bootstrap bands have the width statistics predicts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distlab import studies
from figures import _plot

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def smoke_results():
    from _smoke_results import smoke_results_root

    return smoke_results_root() / "smoke"


@pytest.mark.parametrize("name", list(_plot.FIGURES))
def test_figure_renders_png_and_pdf(smoke_results, tmp_path, name):
    written = _plot.draw(name, smoke_results / name / "results.parquet", tmp_path)
    assert {p.suffix for p in written} == {".png", ".pdf"}
    for p in written:
        assert p.exists() and p.stat().st_size > 5_000, p


def test_every_study_has_a_figure_and_every_figure_a_study():
    """The one study -> figure map (figures/_plot.FIGURES) covers the registry; each module draws its study."""
    import importlib

    assert set(_plot.FIGURES) == set(studies.names())
    for name, module in _plot.FIGURES.items():
        assert callable(importlib.import_module(module).main), module


def test_figure_script_command_line(smoke_results, tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "figures" / "fig2_oscillation.py"), str(smoke_results / "oscillation" / "results.parquet"), str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "fig2_oscillation.png").exists()


def test_draw_rejects_unknown_names_and_missing_results(tmp_path):
    with pytest.raises(ValueError, match="valid: oscillation"):
        _plot.draw("fig7", tmp_path / "x.parquet", tmp_path)
    with pytest.raises(FileNotFoundError, match="distlab study"):
        _plot.draw("control", tmp_path / "missing.parquet", tmp_path)


def test_bootstrap_band_matches_the_normal_theory_width():
    """For n iid N(0, 1) draws the 95% CI of the mean has width ~ 2 * 1.96 / sqrt(n)."""
    rng = np.random.default_rng(0)
    n = 400
    values = rng.standard_normal((n, 3)) + np.array([0.0, 5.0, -2.0])
    mean, low, high = _plot.mean_and_ci(values)
    np.testing.assert_allclose(mean, values.mean(0))
    assert np.all(low < mean) and np.all(mean < high)
    np.testing.assert_allclose(high - low, 2 * 1.96 * values.std(0, ddof=1) / np.sqrt(n), rtol=0.15)
    single, lo1, hi1 = _plot.mean_and_ci(np.array([[1.0, 2.0]]))
    assert np.array_equal(single, lo1) and np.array_equal(single, hi1)


def test_reproduction_numbers_print_every_study(smoke_results, capsys):
    from figures import reproduction_numbers

    reproduction_numbers.main(str(smoke_results.parent))
    printed = capsys.readouterr().out
    for name in ("control", "actions", "noisy-teacher", "chain", "multi-teacher", "dual", "exploration"):
        assert f"## {name} (smoke" in printed
    assert "steps to 95%: teacher / student / uniform" in printed and "transitions to 95%" in printed


def test_first_crossing_interpolates_between_records():
    """Crossing points of a piecewise-linear curve, against the closed form of a line."""
    from figures.reproduction_numbers import first_crossing

    x = np.array([0.0, 10.0, 100.0, 1000.0])
    y = np.array([0.0, 1.0, 4.0, 10.0])
    assert first_crossing(x, y, 2.5) == pytest.approx(10 + 1.5 / 3 * 90)
    assert first_crossing(x, y, 0.0) == 0.0 and first_crossing(x, y, 10.0) == 1000.0
    assert np.isnan(first_crossing(x, y, 10.5))


def test_figure_command_without_results_fails_naming_the_path_and_the_command(tmp_path, monkeypatch):
    """`distlab figure NAME --results PATH` with nothing there: exit 1, a message naming the files looked for
    and the `distlab study` command that writes them; no study runs and nothing is created."""
    from typer.testing import CliRunner

    from distlab.cli import app

    def no_study(*args, **kwargs):
        raise AssertionError("distlab figure must never run a study")

    monkeypatch.setattr(studies, "run_study", no_study)
    missing = tmp_path / "nonexistent" / "path"
    result = CliRunner().invoke(app, ["figure", "control", "--results", str(missing)])
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert str(missing / "quick" / "control" / "results.parquet") in message
    assert f"distlab study control --quick --out {missing}" in message
    result_all = CliRunner().invoke(app, ["figure", "all", "--results", str(missing)])
    assert result_all.exit_code == 1 and "distlab study mujoco-rules --quick" in result_all.output
    assert not (tmp_path / "nonexistent").exists()
    monkeypatch.chdir(tmp_path)  # the default results root: the command to run needs no --out
    default = CliRunner().invoke(app, ["figure", "control"])
    assert default.exit_code == 1 and "run `distlab study control --quick` first" in " ".join(default.output.split())
    assert not (tmp_path / "results").exists()
