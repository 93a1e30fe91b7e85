"""chain: optimal vs adversarial teachers on the corridor; cloning vs the teacher's value (taxonomy Sec. 4.2, Fig. 6, Fig. 9).

Czarnecki et al. (2019), Sec. 4.2: a corridor of ``2T + 1`` states, start in the middle, reward -1 at
the left end and +1 at the right end. The optimal teacher goes right everywhere, the adversarial one
left. Rules: policy cloning (``teacher``, ``on-policy``, ``n-distill``), ``td-teacher-v`` (TD bootstrapped
from the teacher's value, Prop. 3), ``teacher-v-reward`` (the shaping reward
``r_t + V_pi(s_{t+1}) - V_pi(s_t)``, Sec. 4.2) and ``rl`` (no distillation). The paper's claims: with
the optimal teacher cloning is fastest and teacher-V reward beats rl; with the adversarial teacher
cloning fails, teacher-V reward still learns, TD with the teacher's value improves on the teacher
without solving the task.

Two choices the paper leaves open, made explicit here:

* Its text on the adversarial teacher's value is garbled ("we set V_bad := V_good, thus creating
  adversarial value function"). Cells carry ``teacher_value``: ``"own"`` (the adversarial policy's own
  exact value) or ``"optimal"`` (the optimal teacher's value, the paper's "V_bad := V_good"); for the
  optimal teacher both are the same and only ``"own"`` runs.
* With exact returns teacher-V reward's expected update *equals* rl's (the shaping telescopes to a
  baseline); it differs only for a learner with a learned critic. So ``teacher-v-reward`` and ``rl``
  here are a sampled one-step actor-critic with a tabular TD(0) critic (:func:`actor_critic`); the
  cloning rules and ``td-teacher-v`` use the sampled kernel of ``distlab.sampled``.

The paper uses gamma = 0.99 in its experiments (Sec. 2); the corridor's ``continuation`` = 0.99 is that
discount (without it every interior state of the optimal teacher has value exactly +1 and a TD target
``r + V_pi`` carries no information about direction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np
import pandas as pd

import mdps
from distlab import exact
from distlab.exact import _evaluate_into
from distlab.teachers import sample_index


CLONING = ("teacher", "on-policy", "n-distill")
SAMPLED_RULES = CLONING + ("td-teacher-v",)
ACTOR_CRITIC_RULES = ("teacher-v-reward", "rl")
RULES = SAMPLED_RULES + ACTOR_CRITIC_RULES
TEACHERS = ("optimal", "adversarial")
TEACHER_VALUES = ("own", "optimal")


@dataclass(frozen=True)
class Config:
    lengths: tuple = (5, 10, 20)
    n_seeds: int = 1000
    steps: int = 3000
    record_every: int = 20
    lr: float = 0.02
    critic_lr: float = 0.1
    continuation: float = 0.99
    rules: tuple = RULES
    teachers: tuple = TEACHERS


CONFIGS = {
    "smoke": Config(lengths=(3,), n_seeds=4, steps=40, record_every=10),
    "quick": Config(lengths=(5,), n_seeds=100, steps=1500, record_every=20),
    "full": Config(),
}


def cells(config: Config) -> list[dict]:
    for name in config.rules:
        if name not in RULES:
            raise ValueError(f"rule {name!r} is not part of the chain study; valid: {', '.join(RULES)}")
    for t in config.teachers:
        if t not in TEACHERS:
            raise ValueError(f"unknown chain teacher {t!r}; valid: {', '.join(TEACHERS)}")
    out = []
    for T in config.lengths:
        for teacher in config.teachers:
            for name in config.rules:
                uses_value = name in ("td-teacher-v", "teacher-v-reward")
                values = TEACHER_VALUES if (uses_value and teacher == "adversarial") else ("own",) if uses_value else ("none",)
                for value in values:
                    out.append(dict(
                        T=int(T), teacher=teacher, rule=name, teacher_value=value, n_seeds=config.n_seeds,
                        steps=config.steps, record_every=config.record_every, lr=config.lr,
                        critic_lr=config.critic_lr, continuation=config.continuation,
                    ))
    return out


def corridor_teacher(mdp, which: str) -> np.ndarray:
    """Deterministic corridor teachers: ``"optimal"`` goes RIGHT everywhere, ``"adversarial"`` LEFT."""
    if which not in TEACHERS:
        raise ValueError(f"unknown chain teacher {which!r}; valid: {', '.join(TEACHERS)}")
    action = mdps.chain.RIGHT if which == "optimal" else mdps.chain.LEFT
    return np.eye(mdp.n_actions)[np.full(mdp.n_states, action)]


# ------------------------------------------------------------------------ the actor-critic learner
@nb.njit(cache=True)
def _softmax_row(logits, out):
    m = logits.max()
    total = 0.0
    for a in range(logits.shape[0]):
        out[a] = np.exp(logits[a] - m)
        total += out[a]
    for a in range(logits.shape[0]):
        out[a] /= total


@nb.njit(cache=True)
def _actor_critic_run(next_state, next_prob, R, mu0, shaping_V, use_shaping, steps, lr, critic_lr,
                      record_every, max_len, seed, returns):
    """One learner: ``steps`` episodes of online one-step actor-critic; exact start value recorded."""
    np.random.seed(seed)
    S, A, K = next_prob.shape
    theta = np.zeros((S, A))
    critic = np.zeros(S)
    p = np.empty(A)
    pi = np.empty((S, A))
    V = np.empty(S)
    Q = np.empty((S, A))
    visits = np.empty(S)
    row = 0
    for step in range(steps + 1):
        if step % record_every == 0:
            for s in range(S):
                _softmax_row(theta[s], pi[s])
            _evaluate_into(next_state, next_prob, R, mu0, pi, V, Q, visits)
            acc = 0.0
            for s in range(S):
                acc += mu0[s] * V[s]
            returns[row] = acc
            row += 1
        if step == steps:
            break
        s = min(sample_index(mu0, np.random.random()), S - 1)
        for _ in range(max_len):
            _softmax_row(theta[s], p)
            a = min(sample_index(p, np.random.random()), A - 1)
            k = sample_index(next_prob[s, a], np.random.random())
            ended = k >= K
            s2 = s if ended else next_state[s, a, k]
            r = R[s, a]
            if use_shaping:
                # Sec. 4.2: r + V_pi(s') - V_pi(s), with V_pi = 0 past the end of the episode.
                r += (0.0 if ended else shaping_V[s2]) - shaping_V[s]
            delta = r + (0.0 if ended else critic[s2]) - critic[s]
            critic[s] += critic_lr * delta
            for b in range(A):  # grad of log softmax: onehot(a) - p
                theta[s, b] += lr * delta * ((1.0 if b == a else 0.0) - p[b])
            if ended:
                break
            s = s2


@nb.njit(cache=True, parallel=True)
def _actor_critic_batch(next_state, next_prob, R, mu0, shaping_V, use_shaping, steps, lr, critic_lr,
                        record_every, max_len, seeds, returns):
    for i in nb.prange(seeds.shape[0]):
        _actor_critic_run(next_state, next_prob, R, mu0, shaping_V, use_shaping, steps, lr, critic_lr,
                          record_every, max_len, seeds[i], returns[i])


def actor_critic(mdp, *, steps: int, lr: float, critic_lr: float, teacher_value=None, record_every: int = 10,
                 n_seeds: int = 1, seed: int = 0, max_len: int = 10_000) -> pd.DataFrame:
    """Sampled one-step actor-critic with a tabular TD(0) critic; ``teacher_value`` turns on Sec. 4.2's shaping.

    Per transition ``(s, a, r, s')`` of an episode of the softmax student (logits start at 0, critic at 0):

        rhat  = r + V_pi(s') - V_pi(s)     (teacher-v-reward; rhat = r without ``teacher_value``: rl)
        delta = rhat + C(s') - C(s)        (C = 0 past the end)
        C(s) += critic_lr * delta;   theta[s] += lr * delta * grad log pi_theta(a|s)

    Returns a tidy table (seed, step, start_value) with the student's exact start value every ``record_every``
    episodes; seeds run in parallel and are reseeded each, so results do not depend on the thread count.
    """
    if steps < 1 or record_every < 1 or n_seeds < 1:
        raise ValueError(f"steps, record_every and n_seeds must be >= 1; got {steps}, {record_every}, {n_seeds}")
    use_shaping = teacher_value is not None
    shaping_V = np.zeros(mdp.n_states) if teacher_value is None else np.ascontiguousarray(teacher_value, dtype=np.float64)
    if shaping_V.shape != (mdp.n_states,):
        raise ValueError(f"teacher_value must have shape ({mdp.n_states},); got {shaping_V.shape}")
    n_rows = steps // record_every + 1
    returns = np.zeros((n_seeds, n_rows))
    seeds = np.array([int(np.random.SeedSequence([seed, i]).generate_state(1)[0]) for i in range(n_seeds)], dtype=np.int64)
    _actor_critic_batch(mdp.next_state, mdp.next_prob, mdp.R, mdp.mu0, shaping_V, use_shaping, steps, lr, critic_lr,
                        record_every, max_len, seeds, returns)
    step = np.arange(n_rows) * record_every
    return pd.DataFrame(dict(seed=np.repeat(np.arange(n_seeds), n_rows), step=np.tile(step, n_seeds), start_value=returns.ravel()))


# ------------------------------------------------------------------------------------- one cell
def run_cell(cell: dict) -> pd.DataFrame:
    mdp = mdps.chain_corridor(cell["T"], continuation=cell["continuation"])
    pi = corridor_teacher(mdp, cell["teacher"])
    V_own, _, _ = exact.evaluate(mdp, pi)
    V_opt, _, _ = exact.evaluate(mdp, corridor_teacher(mdp, "optimal"))
    V = V_opt if cell["teacher_value"] == "optimal" else V_own
    seed = 7919 * cell["T"] + (0 if cell["teacher"] == "optimal" else 1)
    if cell["rule"] in ACTOR_CRITIC_RULES:
        table = actor_critic(
            mdp, steps=cell["steps"], lr=cell["lr"], critic_lr=cell["critic_lr"],
            teacher_value=V if cell["rule"] == "teacher-v-reward" else None,
            record_every=cell["record_every"], n_seeds=cell["n_seeds"], seed=seed,
        )
    else:
        from distlab.sampled import train_sampled

        batch = mdps.stack([mdp] * cell["n_seeds"])  # one corridor per seed: the kernel's MDP axis
        teachers = np.broadcast_to(pi, (cell["n_seeds"],) + pi.shape).copy()
        curves = train_sampled(
            batch, cell["rule"], teachers, steps=cell["steps"], lr=cell["lr"], record_every=cell["record_every"],
            teacher_values=np.broadcast_to(V, (cell["n_seeds"], mdp.n_states)).copy(), seed=seed,
        )
        table = curves.rename(columns={"mdp": "seed"})
    start = int(mdp.mu0.argmax())
    table["teacher_return"] = V_own[start]
    table["optimal_return"] = V_opt[start]
    return table
