"""The tabular softmax student, control/behaviour policies, and the per-state distillation losses.

Student (``shared/DESIGN.md``): logits ``theta`` of shape (rows, A) and an optional state -> row alias
map; ``pi_theta(.|s) = softmax(theta[alias[s]])``. Tied rows make states indistinguishable to the
student; with two actions a row is the paper's sigmoid student (``pi_theta(1|s) = sigmoid(theta[r, 1] -
theta[r, 0])``, Fig. 2).

Losses ``l(pi_theta(s), pi(s))`` of one state, for a teacher distribution ``t = pi(.|s)`` and student
``p = softmax(z)`` with logits ``z`` (gradients are wrt ``z``, the logits of that state; ``e_a`` the
unit vector, ``c`` a centring ``x - mean(x)``)::

    hx           Hx(t || p) = -sum_a t_a log p_a                          dl/dz = p - t
    kl           KL(t || p) = sum_a t_a (log t_a - log p_a)               dl/dz = p - t
    reverse-hx   Hx(p || t) = -sum_a p_a log t_a                          dl/dz = p * (f - <p, f>), f = -log t
    reverse-kl   KL(p || t) = sum_a p_a (log p_a - log t_a)               dl/dz = p * (f - <p, f>), f = log p - log t
    mse-logits   1/2 || c(z) - c(log t) ||^2                              dl/dz = c(z) - c(log t)
    nll-argmax   -log p_{a*},  a* = argmax_a t_a (first of ties)          dl/dz = p - e_{a*}

(Czarnecki et al., 2019, Table 1 and Sec. 3.3 for the cross entropies; Rusu et al., 2015 and seed 003
Sec. 3.2 for KL / MSE / NLL.) ``reverse-hx``, ``reverse-kl``, ``mse-logits`` and the log-teacher rewards
need ``log t``, which is ``-inf`` for an action a deterministic teacher never takes (Fig. 6 distils
deterministic teachers): every backend uses ``log max(t, LOG_FLOOR)`` with ``LOG_FLOOR = 1e-12``, a
large finite penalty of about -27.6 (the sampled kernels use the same floor). Teacher temperature
(seed 003 Sec. 3.3): ``t -> t^(1/T) / sum_a t_a^(1/T)``, T < 1 sharpens, T > 1 flattens.
"""

from __future__ import annotations

import numpy as np

from distlab import rules

__all__ = [
    "softmax",
    "student_logits",
    "student_policy",
    "control_policy",
    "explore",
    "tempered_teacher",
    "log_teacher",
    "loss_values",
    "loss_logit_grads",
    "dpd_hybrid_policy",
    "EXPLORATIONS",
    "LOG_FLOOR",
]

EXPLORATIONS = rules.EXPLORATIONS
LOG_FLOOR = 1e-12  # log pi(a|s) is floored at log(1e-12) ~ -27.6 (module docstring)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax over the last axis (max-shifted for stability)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def check_alias(alias, n_rows: int) -> np.ndarray | None:
    """``alias`` as an int64 array of row indices in ``[0, n_rows)``, or ``None`` (identity)."""
    if alias is None:
        return None
    alias = np.asarray(alias)
    if alias.ndim != 1 or not np.issubdtype(alias.dtype, np.integer):
        raise ValueError(f"alias must be a 1-D integer array mapping state -> row of theta; got {alias.dtype} {alias.shape}")
    if alias.size and (alias.min() < 0 or alias.max() >= n_rows):
        raise ValueError(f"alias values must lie in [0, {n_rows}) (the rows of theta); got range [{alias.min()}, {alias.max()}]")
    return alias.astype(np.int64)


def student_logits(theta, alias=None) -> np.ndarray:
    """Per-state logits ``theta[alias[s]]`` (S, A); ``alias=None`` means one row per state."""
    theta = np.asarray(theta, dtype=np.float64)
    if theta.ndim != 2:
        raise ValueError(f"theta must have shape (rows, A); got {theta.shape}")
    alias = check_alias(alias, theta.shape[0])
    return theta if alias is None else theta[alias]


def student_policy(theta, alias=None) -> np.ndarray:
    """``pi_theta(a|s) = softmax(theta[alias[s]])[a]``, shape (S, A)."""
    return softmax(student_logits(theta, alias))


def _greedy_split(logits: np.ndarray) -> np.ndarray:
    """Uniform over the argmax set of each row: the expectation of greedy with random tie-breaking."""
    best = logits == logits.max(axis=-1, keepdims=True)
    return best / best.sum(axis=-1, keepdims=True)


def explore(student, strategy: str = "none", epsilon: float = 0.1, temperature: float = 1.0, theta=None, alias=None) -> np.ndarray:
    """The student's behaviour policy under an exploration strategy (seed 003, Sec. 3.4), (S, A).

    ``"none"``: pi_theta; ``"greedy"``: ``a_t = argmax_a pi_theta(a|s)`` (ties split evenly, the mean of
    random tie-breaking); ``"epsilon-greedy"``: ``(1 - eps) * greedy + eps / |A|``; ``"boltzmann"``:
    ``softmax(logits / temperature)``. The logits are ``theta[alias]`` when ``theta`` is given, else
    ``log pi_theta`` (the same up to a per-state constant, which softmax ignores).
    """
    if strategy not in EXPLORATIONS:
        raise ValueError(f"unknown exploration {strategy!r}; valid: {', '.join(EXPLORATIONS)}")
    student = np.asarray(student, dtype=np.float64)
    if strategy == "none":
        return student
    if theta is not None:
        logits = student_logits(theta, alias)
    else:
        with np.errstate(divide="ignore"):
            logits = np.log(student)
    if strategy == "greedy":
        return _greedy_split(logits)
    if strategy == "epsilon-greedy":
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1]; got {epsilon!r}")
        return (1.0 - epsilon) * _greedy_split(logits) + epsilon / student.shape[-1]
    if not temperature > 0.0:
        raise ValueError(f"boltzmann temperature must be > 0; got {temperature!r}")
    return softmax(logits / temperature)


def control_policy(kind: str, student, teacher, beta: float = 0.5) -> np.ndarray:
    """The control (sampling) policy q of Eq. 1, (S, A): ``"teacher"``, ``"student"``, ``"uniform"`` or
    ``"mixture"`` = ``beta * teacher + (1 - beta) * student`` (Sec. 3.2; Ross et al., 2011)."""
    if kind not in rules.CONTROLS:
        raise ValueError(f"unknown control {kind!r}; valid: {', '.join(rules.CONTROLS)}")
    if kind == "teacher":
        return np.asarray(teacher, dtype=np.float64)
    if kind == "student":
        return np.asarray(student, dtype=np.float64)
    if kind == "uniform":
        student = np.asarray(student)
        return np.full(student.shape, 1.0 / student.shape[-1])
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"mixture beta must be in [0, 1]; got {beta!r}")
    return beta * np.asarray(teacher, dtype=np.float64) + (1.0 - beta) * np.asarray(student, dtype=np.float64)


def tempered_teacher(teacher, temperature: float = 1.0) -> np.ndarray:
    """``pi^(1/T)`` renormalised per state (seed 003, Sec. 3.3): T < 1 sharpens, T > 1 flattens.

    Computed as ``softmax(log(pi) / T)``, so actions with zero probability keep zero probability.
    """
    teacher = np.asarray(teacher, dtype=np.float64)
    if temperature == 1.0:
        return teacher
    if not temperature > 0.0:
        raise ValueError(f"teacher_temperature must be > 0; got {temperature!r}")
    with np.errstate(divide="ignore"):
        return softmax(np.log(teacher) / temperature)


def log_teacher(teacher) -> np.ndarray:
    """``log max(pi(a|s), LOG_FLOOR)``: the teacher's log-probabilities, finite for a deterministic teacher.

    Without the floor the reverse cross entropy / KL, the logit MSE and the entropy-regularised rewards
    are infinite wherever the teacher gives an action probability 0 (module docstring).
    """
    return np.log(np.maximum(np.asarray(teacher, dtype=np.float64), LOG_FLOOR))


def _check_loss(loss: str) -> None:
    if loss not in rules.LOSSES:
        raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(rules.LOSSES)}")


def _centre(x: np.ndarray) -> np.ndarray:
    return x - x.mean(axis=-1, keepdims=True)


def loss_values(loss: str, teacher, student_logits, *, teacher_temperature: float = 1.0) -> np.ndarray:
    """Per-state loss ``l(pi_theta(s), pi(s))`` (S,) for logits (S, A) (equations in the module docstring)."""
    _check_loss(loss)
    z = np.asarray(student_logits, dtype=np.float64)
    t = tempered_teacher(teacher, teacher_temperature)
    if loss == "none":
        return np.zeros(z.shape[0])
    log_p = z - z.max(axis=-1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(axis=-1, keepdims=True))
    if loss == "hx":
        return -(t * log_p).sum(axis=-1)
    if loss == "kl":
        with np.errstate(divide="ignore", invalid="ignore"):
            t_log_t = np.where(t > 0.0, t * np.log(t), 0.0)  # 0 log 0 = 0
        return (t_log_t - t * log_p).sum(axis=-1)
    if loss == "nll-argmax":
        return -np.take_along_axis(log_p, np.argmax(t, axis=-1)[:, None], axis=-1)[:, 0]
    log_t = log_teacher(t)
    p = np.exp(log_p)
    if loss == "reverse-hx":
        return -(p * log_t).sum(axis=-1)
    if loss == "reverse-kl":
        return (p * (log_p - log_t)).sum(axis=-1)
    return 0.5 * ((_centre(z) - _centre(log_t)) ** 2).sum(axis=-1)  # mse-logits


def loss_logit_grads(loss: str, teacher, student_logits, *, teacher_temperature: float = 1.0) -> np.ndarray:
    """``d l(pi_theta(s), pi(s)) / d z_s`` (S, A), the gradient wrt each state's own logits."""
    _check_loss(loss)
    z = np.asarray(student_logits, dtype=np.float64)
    t = tempered_teacher(teacher, teacher_temperature)
    if loss == "none":
        return np.zeros_like(z)
    p = softmax(z)
    if loss in ("hx", "kl"):
        return p - t  # sum_a t_a = 1; the teacher's own entropy in kl has no gradient
    if loss == "nll-argmax":
        return p - np.eye(z.shape[-1])[np.argmax(t, axis=-1)]
    log_t = log_teacher(t)
    if loss == "mse-logits":
        return _centre(z) - _centre(log_t)
    # d/dz_k sum_a p_a f_a with df/dz contributing nothing in expectation (reverse-hx) or sum_a p_a
    # dlog p_a/dz_k = 0 (reverse-kl): the softmax Jacobian p_k (f_k - <p, f>).
    f = -log_t if loss == "reverse-hx" else np.log(p) - log_t
    return p * (f - (p * f).sum(axis=-1, keepdims=True))


def dpd_hybrid_policy(policy, peer, value, peer_value) -> np.ndarray:
    """DPD's hypothetical hybrid policy (Lai et al., 2020, Eq. 2): in each state, the peer's action
    distribution where ``xi(s) = V_peer(s) - V(s) > 0``, else the policy's own. Prop. 1 of DPD: the
    hybrid's value is at least ``max(V, V_peer)`` in every state."""
    policy, peer = np.asarray(policy, dtype=np.float64), np.asarray(peer, dtype=np.float64)
    xi = np.asarray(peer_value, dtype=np.float64) - np.asarray(value, dtype=np.float64)
    return np.where((xi > 0.0)[:, None], peer, policy)
