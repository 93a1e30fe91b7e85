"""The noisy-teacher study's teacher-value estimates (issue 11): which cells read which estimate, and what it is."""

import numpy as np
import pytest

from distlab import exact, rules, teachers
from distlab.studies import _common, noisy_teacher


def test_value_reading_rules_run_with_every_estimate_and_the_others_once():
    config = noisy_teacher.CONFIGS["smoke"]
    cells = noisy_teacher.cells(config)
    for rule in config.rules:
        values = {c["value"] for c in cells if c["rule"] == rule}
        expected = set(noisy_teacher.VALUE_ESTIMATES) if rules.get(rule).uses_teacher_value else {"none"}
        assert values == expected, rule
    assert {"td-teacher-v", "value-gated+r"} <= {c["rule"] for c in cells if c["value"] == "mc-min-visits"}


def test_unknown_estimate_names_the_valid_ones():
    bad = noisy_teacher.Config(values=("mc100",))
    with pytest.raises(ValueError, match="unknown teacher value estimate 'mc100'; valid: mc, mc-min-visits, exact"):
        noisy_teacher.cells(bad)


def test_estimates_are_the_library_monte_carlo_and_the_exact_solve():
    """``mc`` and ``mc-min-visits`` come from the same episodes; the threshold zeroes exactly the states
    with fewer visits; ``exact`` is the linear solve."""
    batch = _common.gridworlds(0, 2, size=8)
    pi = noisy_teacher.noisy_teachers(batch, 0, 0.25)
    V_exact, _, _ = exact.evaluate_batch(batch, pi)
    cell = dict(mc_episodes=40, mc_min_visits=20)
    raw = noisy_teacher.teacher_values("mc", batch, pi, 0, V_exact, cell)
    cut = noisy_teacher.teacher_values("mc-min-visits", batch, pi, 0, V_exact, cell)
    for b in range(2):
        V_hat, visits = teachers.monte_carlo_values(batch[b], pi[b], 40, seed=noisy_teacher.MC_SEED + b, return_visits=True)
        np.testing.assert_array_equal(raw[b], V_hat)
        under = visits < 20
        np.testing.assert_array_equal(cut[b][under], 0.0)
        np.testing.assert_array_equal(cut[b][~under], V_hat[~under])
    assert noisy_teacher.teacher_values("exact", batch, pi, 0, V_exact, cell) is V_exact
    with pytest.raises(ValueError, match="valid: mc, mc-min-visits, exact"):
        noisy_teacher.teacher_values("mc100", batch, pi, 0, V_exact, cell)
