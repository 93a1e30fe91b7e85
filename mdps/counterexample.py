"""The non-convergence counterexample of *Distilling Policy Distillation*, Fig. 2 (App. C, rebuilt).

The paper's appendix with the construction is missing from the available text; this module rebuilds it
from the figure and Sec. 3.1, and documents why it oscillates.
"""

from __future__ import annotations

import numpy as np

from .tabular import TabularMDP

__all__ = ["oscillation_counterexample", "COUNTEREXAMPLE_STATES"]

LEFT, RIGHT = 0, 1
# State indices: the start, the two states the student cannot tell apart, and the four terminal states
# (named by the two actions that lead there).
COUNTEREXAMPLE_STATES = dict(start=0, s_L=1, s_R=2, LL=3, LR=4, RL=5, RR=6)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + np.exp(-x))


def oscillation_counterexample(
    rewards: tuple[float, float, float, float] = (0.0, -1.0, 1.0, -2.0),
    teacher_logit: float = 4.0,
) -> tuple[TabularMDP, np.ndarray, np.ndarray]:
    """Fig. 2: on-policy distill + R cycles forever, n-distill + R converges. Returns ``(mdp, alias, teacher)``.

    MDP (7 states, actions ``L = 0``, ``R = 1``, undiscounted, one initial state)::

        start --L--> s_L --L--> LL (reward a)      --R--> LR (reward b)
              --R--> s_R --L--> RL (reward c)      --R--> RR (reward d)

    Terminal states pay their reward for either action and end the episode (as the green states of
    the figure); ``rewards = (a, b, c, d) = (0, -1, 1, -2)`` by default.

    Student (``alias``): three rows of logits: row 0 for ``start`` (``y = pi_theta(R|start)``), row 1
    *shared* by ``s_L`` and ``s_R`` (``x = pi_theta(R|s_L) = pi_theta(R|s_R)``: the sigmoid student that
    cannot tell them apart), row 2 for the terminal states (both actions are equivalent there).

    Teacher: in ``s_R`` it prefers R, ``pi(R|s_R) = sigmoid(teacher_logit)``; it gives no signal
    elsewhere: ``mdp.info["loss_mask"]`` is 1 in ``s_R`` and 0 in every other state (the exact backend
    reads it as its default ``loss_mask``; its teacher rows there are uniform and unused).

    The paper's loss is ``l(theta|s_R) = -4 pi_theta(R|s_R)``, *linear* in the student's probabilities.
    That is exactly the reverse cross entropy ``Hx(pi_theta || pi) = -sum_a pi_theta(a) log pi(a)`` with
    ``log(pi(R)/pi(L)) = teacher_logit = 4`` (up to a constant), so run the rules with
    ``loss="reverse-hx"``::

        mdp, alias, teacher = oscillation_counterexample()
        run_exact(mdp, "on-policy+r", teacher, alias=alias, loss="reverse-hx", steps=20_000, lr=0.5)  # cycles
        run_exact(mdp, "n-distill+r", teacher, alias=alias, loss="reverse-hx", steps=20_000, lr=0.5)  # converges

    Why it cycles. With ``k = teacher_logit`` and exact expectations, on-policy distill + R moves the
    logit differences ``phi`` (shared row) and ``psi`` (start) as (``theta -= lr g``, per unit ``lr``)::

        dphi = 2 x(1-x) [ y (k + d - c) + (1 - y)(b - a) ]       s_R: teacher (k) vs reward; s_L: reward
        dpsi = 2 y(1-y) [ V_R(x) - V_L(x) ],  V_L = a + x (b - a),  V_R = c + x (d - c)

    With the defaults ``dphi = 2 x(1-x)(2y - 1)`` and ``dpsi = 2 y(1-y)(1 - 2x)``: reward and distillation
    pull the shared parameter in turn. When the student leans R (``x > 1/2``), ``s_L`` is worth more, the
    start state sends it to ``s_L``, whose reward pulls ``x`` to L; leaning L, ``s_R`` (reward +1 for L)
    is worth more, the student goes there, and the teacher (``k = 4``) beats the reward (``c - d = 3``)
    and pulls ``x`` back to R. The flow conserves ``H = 1/(x(1-x)) + 1/(y(1-y))`` (``dH/dt = 0``): the
    orbits are closed curves around ``x = y = 1/2``, so on-policy distill + R never converges, and with
    gradient *steps* (the explicit Euler scheme of this centre) ``H`` grows at every step: the amplitude
    never shrinks, the orbit spreads towards the corners. N-distill + R adds the reward
    ``-l(s_{t+1})`` (Theorem 2): the update becomes the gradient of ``E_{pi_theta}[sum_t l(s_t)] - return
    = y (k' - k x) - V(x, y)`` (``k'`` a constant), a bilinear function of ``(x, y)`` whose minimum is a
    corner, here ``x = y = 0`` (go to ``s_L``, take L, return ``a = 0``); gradient descent converges to it.

    Why the paper's linear loss and not ``Hx(pi || pi_theta)``: the forward cross entropy pulls with
    ``x - pi(R|s_R)``, whose derivative ``x(1-x)`` damps the rotation. At the interior rest point the
    Jacobian's trace is ``-m y x(1-x) [1 + (1-2x)(t-x)/(x(1-x))] < 0`` for every teacher ``t`` in [0, 1]
    and weight ``m > 0``, so in this two-parameter geometry on-policy distill + R with the forward cross
    entropy spirals into a fixed point (tested); its non-convergence needs a loss that is linear in
    ``pi_theta``, as in the paper.
    """
    a, b, c, d = (float(r) for r in rewards)
    if not np.all(np.isfinite([a, b, c, d, teacher_logit])):
        raise ValueError(f"rewards and teacher_logit must be finite; got {rewards!r}, {teacher_logit!r}")
    st = COUNTEREXAMPLE_STATES
    S = len(st)
    P = np.zeros((S, 2, S))
    P[st["start"], LEFT, st["s_L"]] = 1.0
    P[st["start"], RIGHT, st["s_R"]] = 1.0
    P[st["s_L"], LEFT, st["LL"]] = 1.0
    P[st["s_L"], RIGHT, st["LR"]] = 1.0
    P[st["s_R"], LEFT, st["RL"]] = 1.0
    P[st["s_R"], RIGHT, st["RR"]] = 1.0
    R = np.zeros((S, 2))
    for name, reward in zip(("LL", "LR", "RL", "RR"), (a, b, c, d)):
        R[st[name], :] = reward  # terminal: either action pays and ends the episode
    mu0 = np.zeros(S)
    mu0[st["start"]] = 1.0
    loss_mask = np.zeros(S)
    loss_mask[st["s_R"]] = 1.0
    info = dict(generator="oscillation_counterexample", rewards=(a, b, c, d), teacher_logit=float(teacher_logit),
                states=dict(st), loss_mask=loss_mask.tolist())
    mdp = TabularMDP.from_dense(P, R, mu0, info=info)
    alias = np.array([0, 1, 1, 2, 2, 2, 2], dtype=np.int64)
    teacher = np.full((S, 2), 0.5)
    p_right = _sigmoid(teacher_logit)
    teacher[st["s_R"]] = (1.0 - p_right, p_right)
    return mdp, alias, teacher
