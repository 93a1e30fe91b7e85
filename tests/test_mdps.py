"""The MDP container and its generators: round trips, validation, invariants of each family."""

from collections import deque

import numpy as np
import pytest
from scipy import stats

import mdps
from mdps.gridworld import TERMINAL, UNREWARDED_TERMINAL, WALL


def small_dense():
    P = np.zeros((3, 2, 3))
    P[0, 0, 1] = 0.5
    P[0, 0, 2] = 0.4
    P[0, 1, 0] = 0.9
    P[1, :, 2] = 1.0
    R = np.array([[1.0, 0.0], [0.5, -0.5], [2.0, 2.0]])
    mu0 = np.array([1.0, 0.0, 0.0])
    return P, R, mu0


# ------------------------------------------------------------------------------------ container
@pytest.mark.parametrize("make", [lambda: mdps.garnet(12, 3, 4, seed=1), lambda: mdps.random_gridworld(size=6, seed=2)])
def test_dense_round_trip(make):
    mdp = make()
    P, R, mu0 = mdp.to_dense()
    again = mdps.TabularMDP.from_dense(P, R, mu0)
    P2, R2, mu02 = again.to_dense()
    np.testing.assert_array_equal(P, P2)
    np.testing.assert_array_equal(R, R2)
    np.testing.assert_array_equal(mu0, mu02)
    assert again.branching <= mdp.branching


def test_from_dense_compacts_to_widest_row():
    P, R, mu0 = small_dense()
    mdp = mdps.TabularMDP.from_dense(P, R, mu0)
    assert (mdp.n_states, mdp.n_actions, mdp.branching) == (3, 2, 2)
    # padding slots have zero probability and point at the state itself
    assert mdp.next_prob[1, 0, 1] == 0 and mdp.next_state[1, 0, 1] == 1


def test_save_load_exact_round_trip(tmp_path):
    mdp = mdps.random_gridworld(size=7, n_actions=5, seed=3)
    path = mdp.save(tmp_path / "world.npz")
    loaded = mdps.TabularMDP.load(path)
    for name in ("next_state", "next_prob", "R", "mu0"):
        np.testing.assert_array_equal(getattr(mdp, name), getattr(loaded, name))
        assert getattr(mdp, name).dtype == getattr(loaded, name).dtype
    assert loaded.info["seed"] == 3
    np.testing.assert_array_equal(np.asarray(loaded.info["layout"]), mdp.info["layout"])
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temporary behind


def test_arrays_are_read_only():
    mdp = mdps.garnet(4, 2, 2)
    with pytest.raises(ValueError):
        mdp.R[0, 0] = 1.0


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda P, R, mu0: P.__setitem__((0, 1, 0), -0.1), r"outside \[0, 1\] at \(state=0, action=1"),
        (lambda P, R, mu0: P.__setitem__((1, 0, 2), 1.5), r"outside \[0, 1\] at \(state=1, action=0"),
        (lambda P, R, mu0: P.__setitem__((0, 0, 0), 0.3), r"sum to .* > 1 at \(state=0, action=0\)"),
        (lambda P, R, mu0: P.__setitem__((0, 1, 0), np.nan), r"P has a non-finite value nan at \(state=0, action=1"),
        (lambda P, R, mu0: R.__setitem__((2, 1), np.inf), r"R has a non-finite value inf at \(state=2, action=1\)"),
        (lambda P, R, mu0: mu0.__setitem__(1, 0.5), r"mu0 is not a distribution: it sums to 1.5"),
        (lambda P, R, mu0: mu0.__setitem__(slice(None), [1.5, -0.5, 0.0]), r"mu0 is not a distribution: mu0\[1\] = -0.5"),
        (lambda P, R, mu0: mu0.__setitem__(0, np.nan), r"mu0 has a non-finite value"),
    ],
)
def test_validation_names_the_problem_and_where(mutate, message):
    P, R, mu0 = small_dense()
    mutate(P, R, mu0)
    with pytest.raises(ValueError, match=message):
        mdps.TabularMDP.from_dense(P, R, mu0)


@pytest.mark.parametrize(
    "args, message",
    [
        ((np.zeros((3, 2, 4)), np.zeros((3, 2)), np.ones(3) / 3), r"P must have shape \(S, A, S\)"),
        ((np.zeros((3, 2, 3)), np.zeros((3, 3)), np.ones(3) / 3), r"R must have shape \(S, A\) = \(3, 2\)"),
        ((np.zeros((3, 2, 3)), np.zeros((3, 2)), np.ones(4) / 4), r"mu0 must have shape \(S,\) = \(3,\)"),
    ],
)
def test_shape_mismatches_raise(args, message):
    with pytest.raises(ValueError, match=message):
        mdps.TabularMDP.from_dense(*args)


def test_sparse_index_out_of_range_raises():
    ns = np.zeros((2, 1, 1), dtype=np.int32)
    ns[1, 0, 0] = 5
    with pytest.raises(ValueError, match=r"index 5 out of range \[0, 2\) at \(state=1, action=0\)"):
        mdps.TabularMDP(ns, np.full((2, 1, 1), 0.5), np.zeros((2, 1)), np.array([1.0, 0.0]))


def test_stack_and_index():
    worlds = [mdps.garnet(5, 2, b, seed=b) for b in (1, 3)]
    batch = mdps.stack(worlds)
    assert len(batch) == 2 and batch.next_prob.shape == (2, 5, 2, 3)
    for original, back in zip(worlds, batch):
        np.testing.assert_array_equal(original.to_dense()[0], back.to_dense()[0])
    with pytest.raises(ValueError, match="expected \\(5, 2\\)"):
        mdps.stack([worlds[0], mdps.garnet(6, 2, 1)])


# ------------------------------------------------------------------------------------ gridworld
def reachable_from(P, start):
    """Breadth-first search over the dense continuation graph (independent of the generator's BFS)."""
    seen, queue = {start}, deque([start])
    while queue:
        s = queue.popleft()
        for s2 in np.flatnonzero(P[s].sum(axis=0) > 0):
            if s2 not in seen:
                seen.add(int(s2))
                queue.append(int(s2))
    return seen


@pytest.mark.parametrize("seed", range(8))
def test_gridworld_invariants(seed):
    size = 12
    mdp = mdps.random_gridworld(size=size, n_actions=6, seed=seed)
    P, R, mu0 = mdp.to_dense()
    layout = mdp.info["layout"].ravel()
    S = size * size
    assert P.shape == (S, 6, S) and R.shape == (S, 6)
    start = (size // 2) * size + size // 2
    assert mu0[start] == 1.0 and layout[start] == 0
    rows = P.sum(axis=2)
    moving = (layout != WALL) & (layout != TERMINAL)
    np.testing.assert_allclose(rows[moving], 0.99, rtol=0, atol=1e-12)  # p_end = 0.01 lost every step
    assert np.all(rows[~moving] == 0)  # walls are dead, terminals end the episode
    np.testing.assert_array_equal(R[layout == TERMINAL], 10.0)
    assert np.all(R[layout != TERMINAL] == 0)
    # every non-wall cell is reachable from the start, and at least one terminal is
    reached = reachable_from(P, start)
    assert reached == set(np.flatnonzero(layout != WALL).tolist())
    assert any(layout[s] == TERMINAL for s in reached)
    # extra actions (a >= 4) keep the agent in place
    for s in np.flatnonzero(moving):
        assert P[s, 4, s] == pytest.approx(0.99) and P[s, 5, s] == pytest.approx(0.99)


def test_gridworld_slip_structure():
    """Open cell: intended move gets 0.99 * (1 - slip + slip/4), each other direction 0.99 * slip/4."""
    mdp = mdps.random_gridworld(size=5, seed=0, p_wall=0.0, p_terminal=0.5, slip=0.2)
    P, _, _ = mdp.to_dense()
    layout = mdp.info["layout"]
    s = 2 * 5 + 2
    up, right, down, left = s - 5, s + 1, s + 5, s - 1
    for a, target in enumerate((up, right, down, left)):
        if layout.ravel()[target] == WALL:
            continue
        assert P[s, a, target] == pytest.approx(0.99 * (0.8 + 0.05))
        for other in {up, right, down, left} - {target}:
            assert P[s, a, other] == pytest.approx(0.99 * 0.05)


@pytest.mark.parametrize("seed", range(4))
def test_gridworld_unrewarded_terminals_end_episodes_without_reward(seed):
    """Unrewarded terminal cells: P = 0 and R = 0; rewarding cells still carry the reward; all reachable."""
    size = 10
    mdp = mdps.random_gridworld(size=size, seed=seed, p_terminal=0.03, p_unrewarded_terminal=0.1)
    P, R, _ = mdp.to_dense()
    layout = mdp.info["layout"].ravel()
    assert (layout == UNREWARDED_TERMINAL).any() and (layout == TERMINAL).any()
    assert np.all(P[layout == UNREWARDED_TERMINAL] == 0) and np.all(R[layout == UNREWARDED_TERMINAL] == 0)
    np.testing.assert_array_equal(R[layout == TERMINAL], 10.0)
    start = (size // 2) * size + size // 2
    assert reachable_from(P, start) == set(np.flatnonzero(layout != WALL).tolist())
    np.testing.assert_allclose(P.sum(axis=2)[layout == 0], 0.99, atol=1e-12)  # empty cells only lose p_end
    # the value of any policy is 0 in an unrewarded terminal cell (a dense solve, independent of the generator)
    uniform = np.full(R.shape, 1.0 / R.shape[1])
    V = np.linalg.solve(np.eye(len(R)) - np.einsum("sa,sat->st", uniform, P), (uniform * R).sum(1))
    np.testing.assert_array_equal(V[layout == UNREWARDED_TERMINAL], 0.0)


def test_gridworld_default_layouts_are_unchanged_by_the_unrewarded_option():
    """The split of one uniform per cell: with p_unrewarded_terminal = 0 the layouts are the old ones, and a
    positive value only turns empty cells into unrewarded terminals (walls and rewarding cells stay)."""
    for seed in range(6):
        base = mdps.random_gridworld(size=12, seed=seed)
        same = mdps.random_gridworld(size=12, seed=seed, p_unrewarded_terminal=0.0)
        np.testing.assert_array_equal(base.info["layout"], same.info["layout"])
        # first-draw layouts, before the reachability repair, are nested: compare the pre-repair draw
        rng = np.random.default_rng(seed)
        u_wall, u_terminal = rng.random((2, 12, 12))
        expected = np.where(u_wall < 0.2, WALL, np.where(u_terminal < 0.01, TERMINAL, 0))
        expected.flat[6 * 12 + 6] = 0
        if base.info["draws"] == 1:  # repaired cells only ever become walls
            kept = base.info["layout"] != WALL
            np.testing.assert_array_equal(base.info["layout"][kept], expected[kept])


def test_gridworld_without_reachable_reward_is_an_error():
    with pytest.raises(ValueError, match="no gridworld with a reachable terminal"):
        mdps.random_gridworld(size=3, seed=0, p_wall=0.0, p_terminal=0.0)


def test_gridworld_moves_off_grid_or_into_walls_stay():
    mdp = mdps.random_gridworld(size=5, seed=4, p_wall=0.3, p_terminal=0.2, slip=0.0)
    P, _, _ = mdp.to_dense()
    layout = mdp.info["layout"]
    moves = [(-1, 0), (0, 1), (1, 0), (0, -1)]
    checked = 0
    for s in np.flatnonzero(layout.ravel() == 0):
        r, c = divmod(int(s), 5)
        for a, (dr, dc) in enumerate(moves):
            rr, cc = r + dr, c + dc
            blocked = not (0 <= rr < 5 and 0 <= cc < 5) or layout[rr, cc] == WALL
            target = s if blocked else rr * 5 + cc
            assert P[s, a, target] == pytest.approx(0.99)
            checked += blocked
    assert checked > 0  # the layout does exercise blocked moves


def test_gridworld_determinism_and_batch_consistency():
    a = mdps.random_gridworld(seed=11)
    b = mdps.random_gridworld(seed=11)
    c = mdps.random_gridworld(seed=12)
    np.testing.assert_array_equal(a.next_prob, b.next_prob)
    assert not np.array_equal(a.info["layout"], c.info["layout"])
    batch = mdps.random_gridworlds(5, seed=10)
    np.testing.assert_array_equal(batch[1].next_prob, a.next_prob)
    np.testing.assert_array_equal(batch[1].next_state, a.next_state)
    assert len({batch[i].info["layout"].tobytes() for i in range(5)}) == 5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(size=2), "size must be an integer >= 3"),
        (dict(n_actions=3), "n_actions must be an integer >= 4"),
        (dict(p_wall=1.5), "p_wall must be a probability"),
        (dict(slip=-0.1), "slip must be a probability"),
        (dict(p_end=0.0), "p_end must be in \\(0, 1\\]"),
        (dict(p_unrewarded_terminal=-0.1), "p_unrewarded_terminal must be a probability"),
        (dict(p_terminal=0.6, p_unrewarded_terminal=0.5), "p_terminal \\+ p_unrewarded_terminal must be <= 1"),
    ],
)
def test_gridworld_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mdps.random_gridworld(**kwargs)


# ------------------------------------------------------------------------------------ chain and garnet
def test_chain_corridor_structure():
    T = 4
    mdp = mdps.chain_corridor(T)
    P, R, mu0 = mdp.to_dense()
    assert P.shape == (9, 2, 9) and mu0[T] == 1
    assert R[0, 0] == -1 and R[8, 1] == 1 and np.all(R[1:8] == 0)
    assert P[0].sum() == 0 and P[8].sum() == 0
    for s in range(1, 8):
        assert P[s, mdps.chain.LEFT, s - 1] == 1 and P[s, mdps.chain.RIGHT, s + 1] == 1
    with pytest.raises(ValueError, match="T must be a positive integer"):
        mdps.chain_corridor(0)


def test_garnet_structure():
    n, A, b = 30, 4, 5
    mdp = mdps.garnet(n, A, b, seed=0, continuation=0.9)
    assert mdp.branching == b
    assert np.all(mdp.next_prob > 0)
    for s in range(n):
        for a in range(A):
            assert len(set(mdp.next_state[s, a].tolist())) == b  # distinct successors
    np.testing.assert_allclose(mdp.next_prob.sum(axis=2), 0.9, atol=1e-12)
    np.testing.assert_allclose(mdp.mu0, 1 / n)
    assert not np.array_equal(mdp.next_state, mdps.garnet(n, A, b, seed=1).next_state)
    np.testing.assert_array_equal(mdp.next_prob, mdps.garnet(n, A, b, seed=0, continuation=0.9).next_prob)


def test_garnet_weights_are_uniform_on_the_simplex():
    """A coordinate of a uniform point on the b-simplex is Beta(1, b - 1) (cut-point construction)."""
    b = 4
    mdp = mdps.garnet(200, 10, b, seed=5, continuation=0.5)
    first = mdp.next_prob[:, :, 0].ravel() / 0.5
    assert stats.kstest(first, stats.beta(1, b - 1).cdf).pvalue > 1e-3
    # normalised independent uniforms (a common mistake) are far from Beta(1, b-1)
    u = np.random.default_rng(0).random((2000, b))
    assert stats.kstest(u[:, 0] / u.sum(1), stats.beta(1, b - 1).cdf).pvalue < 1e-3


def test_garnet_bad_parameters():
    with pytest.raises(ValueError, match="branching=6 cannot exceed n_states=5"):
        mdps.garnet(5, 2, 6)
    with pytest.raises(ValueError, match="continuation must be in \\(0, 1\\)"):
        mdps.garnet(5, 2, 2, continuation=1.0)
