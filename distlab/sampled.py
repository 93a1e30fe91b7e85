"""Sampled updates of every rule: the Python API over the numba kernels (estimates of Eq. 1).

*Distilling Policy Distillation* (Czarnecki et al., 2019), Eq. 1, estimated from trajectories sampled
with the control policy ``q``:

    g(tau) = sum_t [ -grad log pi_theta(a_t|s_t) * (W_t - b(s_t))  +  w(s_t) * grad l(pi_theta, s_t) ]

applied as ``theta <- theta - lr * g``. With whole episodes (``step_unit="episode"``) its expectation is
:func:`distlab.expected.expected_update`, component by component (tested for every registered rule):

* ``W_t = sum_{i>=t} (rhat_i + r_i * env_reward)`` (score ``"return"``), plus ``r_t + V_pi(s_{t+1})``
  (``"td-teacher-v"``, V_pi = 0 past the end) or ``r_t`` (``"td-v0"``);
* rewards: ``log-teacher`` = m(s_i) log pi(a_i|s_i); ``neg-next-loss`` = -w(s_{i+1}) l(s_{i+1});
  ``log-teacher-next`` = m(s_{i+1}) log pi(a_{i+1}|s_{i+1}) with ``a_{i+1}`` the action taken next;
  ``teacher-v-shaping`` = V_pi(s_{i+1}) - V_pi(s_i); all three "next" terms are 0 past the end;
* ``w(s) = gate(s) * m(s)``: gate 1, ``value`` 1[V_pi(s) > V_theta(s)] (Prop. 2), or ``dpd``
  (Lai et al., 2020, Eqs. 9, 11; clipped and normalised by ``dpd_clip``), held fixed (a stop-gradient
  weight); ``m`` the per-state ``loss_mask`` (default ``mdp.info["loss_mask"]``, else 1); DPD's loss
  states come from the peer's trajectories with ``dpd_states="peer"``;
* ``pi`` in the losses and log-teacher rewards is the distillation target: the teacher (or DPD's peer)
  tempered by ``teacher_temperature``; the control ``"teacher"`` acts with the teacher as given;
* ``b(s)``, the baseline (``baseline``): 0; ``"exact"``: ``E_q[Rhat_t | s_t = s]``, the current
  student's exact expected return-to-go of the rule's reward (``UpdateTerms.return_to_go``); or
  ``"learned"``: a tabular critic of it, every-visit Monte Carlo with step ``baseline_lr``, from 0. It
  is unbiased because ``E_{a ~ pi_theta}[grad log pi_theta(a|s)] = 0`` and ``b`` never depends on the
  sample it is subtracted from; where the control is not the student itself that expectation is
  ``q - pi_theta`` and the kernels add back its exact value. Only the return part ``Rhat`` has a
  baseline: the TD scores' one-step targets keep theirs (``td-teacher-v``, ``td-v0`` are unchanged).

What one optimisation step consumes (``step_unit``, :class:`~distlab.options.UpdateOptions`):

* ``"episode"``: ``episodes_per_step`` episodes from ``mu0``, each capped at ``max_steps`` transitions
  (a truncated episode is treated as ended there: a bias, reported by a warning; ``max_steps`` is the
  truncation knob). ``g`` is the mean of the single-episode updates.
* ``"transitions"``: exactly ``transitions_per_step = N`` transitions of the control as one unroll; the
  episode in progress continues into the next step and a new episode starts from ``mu0`` when one
  ends. ``g`` is the unroll's update, summed over its transitions as an episode's is. Returns are cut
  at the unroll's end: the last reward's look-ahead is taken at the known next state ``s_N`` (for
  log-teacher-next its expectation under ``q``, the next action being not yet drawn) and the return is
  **bootstrapped with the baseline ``b(s_N)`` when ``baseline`` is not ``"none"``, else cut there**
  (no bootstrap: biased by the missing tail). With ``baseline="exact"`` the cut is unbiased, and at a
  fixed ``theta`` the expected update of an unroll from the stationary visit distribution of the
  restarted process is ``N / E_q[T] * expected_update`` (``E_q[T] = sum_s d_q(s)``, the mean episode
  length): each transition is a visit drawn from ``d_q / sum d_q``. (With DPD's peer states the loss
  term comes from N transitions of the peer's own stream and scales with ``N / E_peer[T]`` instead.)

Every metrics table of :func:`train_sampled` has a ``transitions`` column: the sampled transitions of
that MDP before the recorded step (``N * step`` with ``"transitions"``; with DPD's peer states both
streams count). The kernels are in :mod:`distlab.kernels` (rollout machinery) and
:mod:`distlab.components` (the rule's components); the RNG kit in :mod:`distlab.rollout`.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from distlab import exact, rules
from distlab import kernels
from distlab import student as st
from distlab.components import component_codes
from distlab.expected import update_terms
from distlab.options import BASELINES, DATA, UpdateOptions, resolve, split_keywords
from distlab.rollout import generator_states
from mdps import MDPBatch, TabularMDP

__all__ = ["sampled_update", "train_sampled", "component_codes", "record_grid", "KERNEL_LOSSES", "METRICS",
           "DPD_WEIGHTS", "UpdateOptions"]

KERNEL_LOSSES = rules.LOSSES  # every loss of the registry is implemented in the kernels
DPD_WEIGHTS = rules.DPD_WEIGHTS
METRICS = (
    "start_value",  # mu0 @ V_theta
    "hx_teacher",  # E_z[sum_t Hx(pi(s_t) || pi_theta(s_t))] = visits_z @ Hx, z = teacher, student, uniform
    "hx_student",
    "hx_uniform",
    "kl_teacher",  # the same with KL(pi || pi_theta) = Hx - H(pi) (what Fig. 3 of the paper plots)
    "kl_student",
    "kl_uniform",
)
assert len(METRICS) == kernels.N_METRICS
# log pi(a|s) is floored at log(1e-12) in every backend (``student.LOG_FLOOR``): finite for the
# deterministic teachers of Fig. 6.
LOG_FLOOR = st.LOG_FLOOR
TRAIN_DATA = tuple(n for n in DATA if n != "student_value")  # train_sampled computes V_theta itself


# ============================================================================================ API
def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _alias_map(alias, n_states: int, rows: int) -> np.ndarray:
    """``alias`` as int64 (identity when None), checked against the states and rows."""
    if alias is None:
        if rows != n_states:
            raise ValueError(f"theta has {rows} rows but the MDP has {n_states} states; pass alias (state -> row)")
        return np.arange(n_states, dtype=np.int64)
    alias = st.check_alias(alias, rows)
    if alias.shape != (n_states,):
        raise ValueError(f"alias must have one entry per state ({n_states}); got shape {alias.shape}")
    return np.ascontiguousarray(alias)


def _row_states(alias: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The states of each row (CSR: ``row_states[row_ptr[r]:row_ptr[r + 1]]``), to refresh their
    control CDFs when the row changes."""
    row_states = np.argsort(alias, kind="stable").astype(np.int64)
    row_ptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(alias, minlength=rows), out=row_ptr[1:])
    return row_ptr, row_states


def _check_logits(theta, shape: tuple[int, ...], name: str) -> np.ndarray:
    """A float64 copy of ``theta`` (the training kernel updates it in place); ``shape`` has ``None`` rows."""
    theta = np.array(theta, dtype=np.float64)
    if theta.ndim != len(shape) or any(n is not None and n != m for n, m in zip(shape, theta.shape)):
        raise ValueError(f"{name} must have shape {tuple('rows' if n is None else n for n in shape)}; got {theta.shape}")
    if not np.isfinite(theta).all():
        raise ValueError(f"{name} has non-finite logits")
    return theta


def _check_values(values, shape: tuple[int, ...], name: str) -> np.ndarray:
    values = np.ascontiguousarray(values, dtype=np.float64)
    if values.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} has non-finite entries")
    return values


def _loss_mask(loss_mask, info: dict, S: int) -> np.ndarray:
    if loss_mask is None:
        loss_mask = info.get("loss_mask")
    return np.ones(S) if loss_mask is None else _check_values(loss_mask, (S,), "loss_mask")


def _warn_truncations(n: int, episodes: int, max_steps: int) -> None:
    if n:
        warnings.warn(f"{n} of {episodes} episodes reached max_steps={max_steps} and were truncated there "
                      "(a bias: raise max_steps)", stacklevel=3)


def _estimator_arguments(options: UpdateOptions) -> tuple:
    """The kernels' arguments for the estimator options: (transitions_mode, N, baseline code, baseline_lr)."""
    transitions_mode = options.step_unit == "transitions"
    return (transitions_mode, int(options.transitions_per_step) if transitions_mode else 0,
            BASELINES.index(options.baseline), float(options.baseline_lr))


def sampled_update(
    mdp: TabularMDP,
    rule,
    theta,
    teacher,
    options: UpdateOptions | None = None,
    *,
    episodes: int,
    seed: int,
    chunks: int = 64,
    **keywords,
) -> tuple[np.ndarray, np.ndarray]:
    """Monte-Carlo estimate of the update direction of Eq. 1: ``(mean_g, stderr_g)``, both like ``theta``.

    ``mean_g`` is the mean of ``episodes`` single-sample updates ``g`` (module docstring) at the fixed
    ``theta``, ``stderr_g`` its elementwise standard error. A sample is one episode, or with
    ``step_unit="transitions"`` one unroll of ``transitions_per_step`` transitions (consecutive unrolls of
    a chunk continue one stream, as training steps do; its expectation is then ``N / E_q[T]`` times the
    per-episode one, module docstring). With whole episodes the expectation is
    :func:`distlab.expected.expected_update` with the same options (tested for every rule).

    Args:
        rule: a registered name or a :class:`~distlab.rules.Rule`.
        theta: (rows, A) logits.
        teacher: (S, A) teacher policy pi.
        options: :class:`~distlab.options.UpdateOptions`; keywords naming its fields override it (loss,
            control, beta, exploration, epsilon, temperature, teacher_temperature, dpd_*, step_unit,
            transitions_per_step, baseline, baseline_lr, max_steps).
        episodes: the number of samples (episodes, or unrolls).
        seed: the user's seed (``rollout.generator_states``).
        chunks: independent seeded units of samples: fixed, so the result is the same on any number of
            threads.
        keywords: also the per-MDP data (``options.DATA``): ``alias`` (S,) state -> row; ``teacher_value``
            V_pi (S,), exact by default where the rule needs it; ``student_value`` V_theta (S,) for the
            gates, exact by default; ``peer`` / ``peer_value`` DPD's peer (default the teacher) and its
            value; ``loss_mask`` per-state weight of the teacher's signal.

    The baseline ``"exact"`` is the return-to-go at this ``theta``; ``"learned"`` starts from 0 in each
    chunk and learns along its samples.
    """
    options, data = split_keywords("sampled_update", options, keywords)
    rule = resolve(rule, options)
    episodes = _positive_int("episodes", episodes)
    chunks = min(_positive_int("chunks", chunks), episodes)
    S, A = mdp.n_states, mdp.n_actions
    theta = _check_logits(theta, (None, A), "theta")
    alias = _alias_map(data.get("alias"), S, theta.shape[0])
    terms = update_terms(mdp, rule, theta, teacher, options, **data)
    teacher = exact.check_policy(teacher, S, A, name="teacher")
    peer_pi = teacher if data.get("peer") is None else exact.check_policy(data["peer"], S, A, name="peer")
    teacher_v = np.zeros(S) if terms.teacher_value is None else terms.teacher_value
    baseline_v = terms.return_to_go if options.baseline == "exact" else np.zeros(S)
    chunk_units = np.full(chunks, episodes // chunks, dtype=np.int64)
    chunk_units[: episodes % chunks] += 1
    g_sum = np.zeros((chunks,) + theta.shape)
    g_sumsq = np.zeros((chunks,) + theta.shape)
    truncations = np.zeros(chunks, dtype=np.int64)
    transitions = np.zeros(chunks, dtype=np.int64)
    peer_states = rule.gate == "dpd" and options.dpd_states == "peer"
    transitions_mode, N, baseline_code, baseline_lr = _estimator_arguments(options)
    kernels.sampled_update_kernel(
        mdp.next_state, mdp.next_prob, mdp.R, mdp.mu0, alias, theta, teacher, peer_pi,
        np.ascontiguousarray(terms.target), np.ascontiguousarray(teacher_v), np.ascontiguousarray(terms.mask),
        np.ascontiguousarray(terms.weight), np.ascontiguousarray(baseline_v), component_codes(rule),
        rules.EXPLORATIONS.index(options.exploration), float(options.beta), float(options.epsilon),
        1.0 / float(options.temperature), int(options.max_steps), transitions_mode, N, peer_states, baseline_code,
        baseline_lr, chunk_units, generator_states(seed, chunks), g_sum, g_sumsq, truncations, transitions)
    _warn_truncations(int(truncations.sum()), episodes, int(options.max_steps))
    mean = g_sum.sum(axis=0) / episodes
    if episodes == 1:
        return mean, np.full_like(mean, np.nan)
    var = np.maximum(g_sumsq.sum(axis=0) - episodes * mean**2, 0.0) / (episodes - 1)
    return mean, np.sqrt(var / episodes)


def _targets_and_values(rule, teacher, teacher_temperature, teacher_value, peer, peer_value, evaluate, shape):
    """The distillation target (tempered teacher, or DPD's peer), V_pi and V_peer, as the exact backend.

    ``evaluate(pi)`` gives exact values; ``shape`` is (S,) or (B, S). Values that the rule does not read
    are zeros.
    """
    dpd = rule.gate == "dpd"
    if (peer is not None or peer_value is not None) and not dpd:
        raise ValueError(f"peer / peer_value are for rules with gate 'dpd'; rule {rule.name!r} has gate {rule.gate!r}")
    source = teacher
    if dpd and peer is not None:
        source = exact.check_policy(peer, shape[-1], teacher.shape[-1], name="peer")
        if source.shape != teacher.shape:
            raise ValueError(f"peer must have the teachers' shape {teacher.shape}; got {source.shape}")
    target = np.ascontiguousarray(st.tempered_teacher(source, teacher_temperature))
    needs_teacher_v = rule.uses_teacher_value or (dpd and peer is None and peer_value is None)
    teacher_v = np.zeros(shape)
    if needs_teacher_v:
        teacher_v = evaluate(teacher) if teacher_value is None else _check_values(teacher_value, shape, "teacher_value")
    peer_v = np.zeros(shape)
    if dpd:
        if peer_value is not None:
            peer_v = _check_values(peer_value, shape, "peer_value")
        elif peer is not None:
            peer_v = evaluate(source)
        else:
            peer_v = teacher_v
    return source, target, np.ascontiguousarray(teacher_v), np.ascontiguousarray(peer_v)


def record_grid(steps: int, record_every: int | None = None, record_steps=None) -> np.ndarray:
    """The steps at which :func:`train_sampled` records metrics (int64, strictly increasing).

    ``record_steps`` (explicit, e.g. a log-spaced grid ``np.unique(np.geomspace(1, steps, 40).astype(int))``)
    is used as given after checking it is strictly increasing and within ``[0, steps]``; otherwise the
    linear grid ``0, record_every, 2 record_every, ...`` plus the last step.
    """
    if record_steps is not None:
        grid = np.asarray(record_steps)
        if grid.ndim != 1 or grid.size == 0 or not np.issubdtype(grid.dtype, np.integer) and not np.all(grid == np.round(grid)):
            raise ValueError(f"record_steps must be a non-empty 1-D array of integer steps; got {record_steps!r}")
        grid = grid.astype(np.int64)
        if np.any(np.diff(grid) <= 0) or grid[0] < 0 or grid[-1] > steps:
            raise ValueError(f"record_steps must be strictly increasing steps in [0, steps={steps}]; got {grid.tolist()}")
        return np.ascontiguousarray(grid)
    record_every = _positive_int("record_every", record_every)
    return np.unique(np.append(np.arange(0, steps + 1, record_every), steps)).astype(np.int64)


def train_sampled(
    batch: MDPBatch,
    rule,
    teachers,
    options: UpdateOptions | None = None,
    *,
    steps: int,
    lr: float,
    episodes_per_step: int = 1,
    record_every: int = 100,
    record_steps=None,
    seed: int = 0,
    theta0=None,
    value_every: int = 10,
    return_theta: bool = False,
    **keywords,
):
    """Sampled SGD with ``rule`` on every MDP of ``batch``: ``theta <- theta - lr * g`` for ``steps`` steps.

    The whole loop runs in one numba kernel, ``prange`` over MDPs; MDP ``b`` draws from its own seed
    derived from ``seed``, so the result is bitwise identical on any number of threads. A step's ``g`` is
    the mean of ``episodes_per_step`` single-episode updates at the current theta, or with
    ``step_unit="transitions"`` the update of one unroll of ``transitions_per_step`` transitions (module
    docstring). At the record steps it records exact metrics of the current student from expected
    visits (``distlab.exact``): ``start_value = mu0 @ V_theta`` and ``hx_z = E_z[sum_t Hx(pi(s_t) ||
    pi_theta(s_t))] = visits_z @ Hx`` for z = teacher, student, uniform (``kl_z`` the same with KL), the
    curves of Fig. 3 of *Distilling Policy Distillation*. Recording costs an exact evaluation per MDP
    (~ a few hundred episodes of sampling on a 20x20 gridworld): use a sparse (e.g. log-spaced)
    ``record_steps`` for long runs.

    Args:
        teachers: (B, S, A) teacher policies.
        options: :class:`~distlab.options.UpdateOptions`; keywords naming its fields override it.
        steps, lr: the number of steps and the step size.
        episodes_per_step: episodes per step with ``step_unit="episode"`` (must stay 1 with "transitions").
        record_every: the linear record grid (steps 0, record_every, ..., and ``steps``);
        record_steps: or an explicit strictly increasing array of steps in [0, steps] (:func:`record_grid`).
        seed: the user's seed.
        theta0: initial logits, (rows, A) for every MDP or (B, rows, A); zeros (uniform) by default.
        value_every: steps between exact recomputations of V_theta for the gates (``value``, ``dpd``) and
            of the ``"exact"`` baseline (any fixed function of the state is unbiased; a stale one reduces
            less variance).
        return_theta: also return the final logits (B, rows, A).
        keywords: also the per-MDP data with a leading B axis: ``alias`` (S,) shared by all MDPs,
            ``teacher_value`` (B, S) V_pi (exact by default where the rule needs it), ``peer`` /
            ``peer_value`` DPD's fixed peers (B, S, A) and values (B, S), ``loss_mask`` (B, S) (default
            each MDP's ``info["loss_mask"]`` or 1). The plural spellings (``teacher_values``, ``peers``,
            ``peer_values``, ``loss_masks``) are accepted.

    Returns:
        a tidy DataFrame with columns ``mdp, step, transitions`` and ``METRICS`` (``transitions``: the
        cumulative sampled transitions of that MDP before the recorded step; ``attrs["transitions"]``: the
        total over the batch), and the final logits when ``return_theta``.
    """
    options, data = split_keywords("train_sampled", options, keywords, data=TRAIN_DATA)
    rule = resolve(rule, options)
    if not isinstance(batch, MDPBatch):
        raise ValueError(f"batch must be an mdps.MDPBatch (see mdps.stack); got {type(batch).__name__}")
    steps = _positive_int("steps", steps, minimum=0)
    value_every = _positive_int("value_every", value_every)
    episodes_per_step = _positive_int("episodes_per_step", episodes_per_step)
    if options.step_unit == "transitions" and episodes_per_step != 1:
        raise ValueError(f"episodes_per_step={episodes_per_step} is for step_unit='episode'; with 'transitions' a "
                         "step is transitions_per_step transitions")
    if not (np.isfinite(lr) and lr >= 0):
        raise ValueError(f"lr must be finite and >= 0; got {lr!r}")
    grid = record_grid(steps, record_every, record_steps)
    B, S, A = len(batch), batch.n_states, batch.n_actions
    teachers = exact.check_policy(teachers, S, A, name="teachers")
    if teachers.shape != (B, S, A):
        raise ValueError(f"teachers must have shape (B, S, A) = ({B}, {S}, {A}); got {teachers.shape}")
    alias = data.get("alias")
    if theta0 is None:
        rows = S if alias is None else int(np.max(alias)) + 1
        theta = np.zeros((B, rows, A))
    else:
        theta0 = np.asarray(theta0, dtype=np.float64)
        if theta0.ndim == 2:
            theta0 = np.broadcast_to(theta0, (B,) + theta0.shape)
        theta = _check_logits(theta0, (B, None, A), "theta0")
    alias = _alias_map(alias, S, theta.shape[1])
    infos = batch.infos or ({},) * B
    if data.get("loss_mask") is None:
        mask = np.stack([_loss_mask(None, info, S) for info in infos])
    else:
        mask = _check_values(data["loss_mask"], (B, S), "loss_mask")
    peer_pi, target, teacher_v, peer_v = _targets_and_values(
        rule, teachers, options.teacher_temperature, data.get("teacher_value"), data.get("peer"),
        data.get("peer_value"), evaluate=lambda pis: exact.evaluate_batch(batch, pis)[0], shape=(B, S))
    metrics = np.full((B, len(grid), len(METRICS)), np.nan)
    record_transitions = np.zeros((B, len(grid)), dtype=np.int64)
    transitions = np.zeros(B, dtype=np.int64)
    truncations = np.zeros(B, dtype=np.int64)
    failures = np.zeros(B, dtype=np.int64)
    row_ptr, row_states = _row_states(alias, theta.shape[1])
    transitions_mode, N, baseline_code, baseline_lr = _estimator_arguments(options)
    kernels.train_batch(
        batch.next_state, batch.next_prob, batch.R, batch.mu0, alias, row_ptr, row_states, theta, teachers,
        np.ascontiguousarray(peer_pi), target, teacher_v, peer_v, mask, component_codes(rule),
        rules.EXPLORATIONS.index(options.exploration), float(options.beta), float(options.epsilon),
        1.0 / float(options.temperature), options.dpd_weight == "exp", float(options.dpd_alpha),
        0.0 if options.dpd_clip is None else float(options.dpd_clip),
        rule.gate == "dpd" and options.dpd_states == "peer", transitions_mode, N, baseline_code, baseline_lr,
        steps, float(lr), episodes_per_step, value_every, int(options.max_steps), grid, metrics, record_transitions,
        generator_states(seed, B), transitions, truncations, failures)
    if options.step_unit == "episode":
        _warn_truncations(int(truncations.sum()), B * steps * episodes_per_step, int(options.max_steps))
    elif truncations.any():
        warnings.warn(f"{int(truncations.sum())} episodes reached max_steps={options.max_steps} and were truncated "
                      "there (a bias: raise max_steps)", stacklevel=2)
    if failures.any():
        warnings.warn(f"the student never terminates from some state in {int((failures > 0).sum())} MDP(s): their "
                      "student metrics are NaN there and value gates / exact baselines kept their last value",
                      stacklevel=2)
    table = pd.DataFrame({
        "mdp": np.repeat(np.arange(B), len(grid)),
        "step": np.tile(grid, B),
        "transitions": record_transitions.ravel(),
        **{name: metrics[:, :, i].ravel() for i, name in enumerate(METRICS)},
    })
    table.attrs["transitions"] = int(transitions.sum())
    return (table, theta) if return_theta else table
