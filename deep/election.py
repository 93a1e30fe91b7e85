"""Teacher election: which ensemble member teaches at a distillation phase.

* ``best``: k_t = argmax_k R_k, R_k the mean of member k's last M training returns (PIEKD Sec. 4.4).
* ``random``: uniform over members (PIEKD Sec. 5.4, "random teacher").
* ``epsilon-greedy``, ``ucb1``, ``thompson``: multi-armed bandits whose arms are the members and whose
  reward is the students' return change after distilling from that teacher (seed 003, Sec. 3.5,
  "multi-teacher policy distillation" as a bandit): at the next election, the previous teacher's arm
  receives ``mean_{students k} (R_k(now) - R_k(at distillation))``. The formulas are those of
  ``distlab.bandits`` (shared with the tabular ``multi-teacher`` study):

  - epsilon-greedy: the arm with the highest mean bandit reward with probability 1 - eps, else uniform;
  - UCB1 (Auer et al., 2002): every arm once, then argmax_i mean_i + c * scale * sqrt(2 ln n / n_i);
    return changes are not in [0, 1] as UCB1 assumes, so the bonus is multiplied by ``scale``, the
    standard deviation of all bandit rewards seen so far (1 until two differ);
  - Thompson sampling, Gaussian prior N(0, scale^2) and reward noise of std ``scale``: theta_i ~
    N(S_i / (n_i + 1), scale^2 / (n_i + 1)), argmax.

A tie in R_k or a bandit score goes to the lowest index.
"""

from __future__ import annotations

import numpy as np

from distlab import bandits

from deep.config import ELECTIONS

__all__ = ["TeacherElection", "recent_performance"]


def recent_performance(returns: list[list[float]], window: int) -> np.ndarray:
    """R_k = mean of member k's last ``window`` training returns; -inf for a member without episodes."""
    return np.array([np.mean(r[-window:]) if r else -np.inf for r in returns])


class TeacherElection:
    """Elects a teacher and keeps the bandit statistics (checkpointable via ``state_dict``)."""

    def __init__(self, strategy: str, k: int, seed: int, epsilon: float = 0.1, ucb_c: float = 1.0):
        if strategy not in ELECTIONS:
            raise ValueError(f"unknown election {strategy!r}; valid: {', '.join(ELECTIONS)}")
        self.strategy, self.k, self.epsilon, self.ucb_c = strategy, k, epsilon, ucb_c
        self.rng = np.random.default_rng([seed, 7919])
        self.counts = np.zeros(k, dtype=np.int64)
        self.sums = np.zeros(k)
        self.rewards: list[float] = []
        self.pending: tuple[int, np.ndarray] | None = None  # (teacher, R of the students at distillation)

    @property
    def is_bandit(self) -> bool:
        return self.strategy in ("epsilon-greedy", "ucb1", "thompson")

    def record_reward(self, arm: int, reward: float) -> None:
        self.counts[arm] += 1
        self.sums[arm] += reward
        self.rewards.append(float(reward))

    def _scale(self) -> float:
        return float(np.std(self.rewards)) if len(self.rewards) >= 2 and np.std(self.rewards) > 0 else 1.0

    def elect(self, performance: np.ndarray) -> int:
        """The teacher for this phase, given R_k (``performance``, shape (K,))."""
        performance = np.asarray(performance, dtype=float)
        if self.is_bandit and self.pending is not None:
            # credit the previous teacher with the students' return change since it taught them
            teacher, before = self.pending
            students = [i for i in range(self.k) if i != teacher]
            change = [performance[i] - before[i] for i in students if np.isfinite(performance[i]) and np.isfinite(before[i])]
            if change:
                self.record_reward(teacher, float(np.mean(change)))
        teacher = self._choose(performance)
        self.pending = (teacher, performance.copy())
        return teacher

    def _choose(self, performance: np.ndarray) -> int:
        if self.strategy == "best":
            return int(np.argmax(performance))
        if self.strategy == "random":
            return int(self.rng.integers(self.k))
        scale = self._scale()
        return bandits.choose_arm(self.strategy, self.counts, self.sums, self.rng, epsilon=self.epsilon, c=self.ucb_c,
                                  scale=scale, sigma=scale, prior_mean=0.0)

    def state_dict(self) -> dict:
        return dict(counts=self.counts.copy(), sums=self.sums.copy(), rewards=list(self.rewards),
                    pending=None if self.pending is None else (self.pending[0], self.pending[1].copy()),
                    rng=self.rng.bit_generator.state)

    def load_state_dict(self, state: dict) -> None:
        self.counts, self.sums, self.rewards = state["counts"].copy(), state["sums"].copy(), list(state["rewards"])
        self.pending = state["pending"]
        self.rng.bit_generator.state = state["rng"]
