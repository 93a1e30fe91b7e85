"""Fig. 2: the counterexample MDP, its closed-form flow, on-policy+r cycling and n-distill+r converging."""

import numpy as np
import pytest
from scipy.special import expit

from distlab import student as st
from distlab.exact import evaluate
from distlab.expected import expected_update, run_exact
from mdps import oscillation_counterexample
from mdps.counterexample import COUNTEREXAMPLE_STATES as STATES

STEPS, LR = 20_000, 0.5
THETA0 = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # start: y = 1/2; shared: x = sigmoid(1)


def policy_probs(df):
    """x = pi_theta(R | s_L) = pi_theta(R | s_R) and y = pi_theta(R | start) per record."""
    x = expit(df.theta_1_1 - df.theta_1_0).to_numpy()
    y = expit(df.theta_0_1 - df.theta_0_0).to_numpy()
    return x, y


@pytest.fixture(scope="module")
def world():
    return oscillation_counterexample()


@pytest.fixture(scope="module")
def runs(world):
    mdp, alias, teacher = world
    run = lambda rule, loss: run_exact(mdp, rule, teacher, steps=STEPS, lr=LR, theta0=THETA0, alias=alias, loss=loss, record_every=10)
    return {(rule, loss): run(rule, loss) for rule, loss in [("on-policy+r", "reverse-hx"), ("n-distill+r", "reverse-hx"), ("on-policy+r", "hx")]}


def test_structure(world):
    mdp, alias, teacher = world
    assert mdp.n_states == 7 and mdp.n_actions == 2
    assert alias[STATES["s_L"]] == alias[STATES["s_R"]] != alias[STATES["start"]]
    np.testing.assert_array_equal(mdp.info["loss_mask"], np.eye(7)[STATES["s_R"]])
    assert mdp.mu0[STATES["start"]] == 1.0
    # Every policy ends in three steps: start, s_L or s_R, a terminal state.
    V, _, visits = evaluate(mdp, np.full((7, 2), 0.5))
    assert visits.sum() == pytest.approx(3.0)
    assert V[STATES["start"]] == pytest.approx(np.mean([0.0, -1.0, 1.0, -2.0]))


def test_reverse_cross_entropy_is_the_papers_linear_loss(world):
    """Hx(pi_theta || pi) in s_R = -4 pi_theta(R|s_R) + const, the loss of Fig. 2."""
    _, _, teacher = world
    s_R = STATES["s_R"]
    phis = np.linspace(-3, 3, 7)
    logits = np.stack([np.zeros_like(phis), phis], axis=1)
    losses = st.loss_values("reverse-hx", np.repeat(teacher[s_R][None], len(phis), 0), logits)
    np.testing.assert_allclose(losses - losses[0], -4.0 * (expit(phis) - expit(phis[0])), rtol=1e-12, atol=1e-12)


def test_flow_matches_the_closed_form_of_the_docstring(world):
    mdp, alias, teacher = world
    rng = np.random.default_rng(0)
    for _ in range(5):
        theta = rng.normal(size=(3, 2))
        g = expected_update(mdp, "on-policy+r", theta, teacher, alias=alias, loss="reverse-hx")
        x, y = expit(theta[1, 1] - theta[1, 0]), expit(theta[0, 1] - theta[0, 0])
        assert -(g[1, 1] - g[1, 0]) == pytest.approx(2 * x * (1 - x) * (2 * y - 1), rel=1e-9, abs=1e-12)
        assert -(g[0, 1] - g[0, 0]) == pytest.approx(2 * y * (1 - y) * (1 - 2 * x), rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(g[2], 0.0, atol=1e-15)  # terminal row: no signal


def test_on_policy_plus_r_cycles_with_non_shrinking_amplitude(runs):
    x, y = policy_probs(runs[("on-policy+r", "reverse-hx")])
    quarter = len(x) // 4
    H = 1 / (x * (1 - x)) + 1 / (y * (1 - y))  # conserved by the flow, grown by every Euler step
    assert np.all(np.diff(H) > 0)
    crossings = np.flatnonzero(np.diff(np.sign(x - 0.5)) != 0)
    print(f"on-policy+r: {len(crossings)} crossings of x = 1/2, {np.sum(crossings >= 3 * quarter)} in the last quarter; "
          f"x in [{x[3 * quarter:].min():.4f}, {x[3 * quarter:].max():.4f}] at the end")
    assert np.sum(crossings >= 3 * quarter) >= 4  # still turning in the last 5k steps
    first, last = np.ptp(x[:quarter]), np.ptp(x[3 * quarter:])
    assert last >= first and last > 0.9
    assert np.ptp(y[3 * quarter:]) > 0.9


def test_n_distill_plus_r_converges(runs):
    x, y = policy_probs(runs[("n-distill+r", "reverse-hx")])
    quarter = len(x) // 4
    assert x[-1] < 1e-3 and y[-1] < 1e-3  # the corner x = y = 0: go to s_L, take L
    assert np.all(np.diff(x[quarter:]) <= 0) and np.all(np.diff(y[quarter:]) <= 0)
    df = runs[("n-distill+r", "reverse-hx")]
    assert df.student_return.iloc[-1] == pytest.approx(0.0, abs=1e-3)
    assert np.all(np.diff(df.objective) <= 1e-12)  # a gradient field descending its loss


def test_forward_cross_entropy_spirals_into_a_fixed_point(runs):
    """The docstring's trace argument: with Hx(pi || pi_theta) on-policy+r converges here."""
    x, _ = policy_probs(runs[("on-policy+r", "hx")])
    quarter = len(x) // 4
    assert np.ptp(x[3 * quarter:]) < 1e-4
