"""The options of an update, once: one frozen dataclass validated in one place.

Every backend (``distlab.expected``, ``distlab.sampled``, the studies, the deep mapping) takes an
:class:`UpdateOptions`. A new option is one field here (with its check in ``__post_init__``); the
functions pick it up through ``options=`` and through keywords::

    expected_update(mdp, "on-policy", theta, pi, UpdateOptions(control="uniform"))
    expected_update(mdp, "on-policy", theta, pi, control="uniform")            # the same
    train_sampled(batch, "dpd+r", peers, steps=..., lr=..., dpd_clip=None, peer=peers)

Two kinds of input, kept apart on purpose:

* **options** (this dataclass): scalars and choices that say *what update* is computed and *how it is
  estimated*. They are hashable, the same for every MDP of a batch, and can sit in a study config.
* **per-MDP data** (keywords of the functions, not fields): arrays shaped by the MDP, one name each,
  ``(S,)`` / ``(S, A)`` for one MDP and with a leading ``B`` axis for a batch (:data:`DATA`):
  ``alias`` (state -> student row), ``teacher_value`` (V_pi), ``student_value`` (V_theta for the gates),
  ``peer`` and ``peer_value`` (DPD's other policy and its value), ``loss_mask`` (per-state weight of the
  teacher's signal). The plural spellings that ``train_sampled`` used (``teacher_values``, ``peers``,
  ``peer_values``, ``loss_masks``) still work (:data:`SPELLINGS`).

Estimator options (``step_unit``, ``transitions_per_step``, ``baseline``, ``baseline_lr``, ``max_steps``)
change how the sampled backend estimates an update, not its expectation (see ``distlab.sampled``);
the exact backend accepts and ignores them, so one options object drives both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from distlab import rules

__all__ = [
    "UpdateOptions",
    "resolve",
    "split_keywords",
    "OPTION_NAMES",
    "DATA",
    "SPELLINGS",
    "STEP_UNITS",
    "BASELINES",
    "DPD_STATES",
    "DPD_WEIGHTS",
]

STEP_UNITS = ("episode", "transitions")
BASELINES = ("none", "exact", "learned")
DPD_STATES = ("own", "peer")
DPD_WEIGHTS = rules.DPD_WEIGHTS
DATA = ("alias", "teacher_value", "student_value", "peer", "peer_value", "loss_mask")
SPELLINGS = {  # older keyword spellings -> the one name
    "teacher_values": "teacher_value",
    "student_values": "student_value",
    "peers": "peer",
    "peer_values": "peer_value",
    "loss_masks": "loss_mask",
}


def _check_choice(name: str, value, valid) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(map(str, valid))}")


def _is_int(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and float(value).is_integer()


@dataclass(frozen=True)
class UpdateOptions:
    """What an update computes beyond its rule, and how the sampled backend estimates it.

    Rule components (``distlab.rules``):
        loss, control: swap the rule's loss (``rules.LOSSES``) / control (``rules.CONTROLS``); None keeps it.
        beta: the teacher's weight in the ``"mixture"`` control, ``beta pi + (1 - beta) pi_theta``.
        exploration, epsilon, temperature: the student's behaviour where the control uses it (seed 003
            Sec. 3.4, ``student.explore``); the score keeps ``grad log pi_theta``.
        teacher_temperature: the distillation target is ``pi^(1/T)`` renormalised (seed 003 Sec. 3.3).

    DPD (gate ``"dpd"``; Lai et al., 2020, seed 002):
        dpd_weight: ``"indicator"`` 1[xi > 0] (Eq. 9) or ``"exp"`` exp(alpha xi) (Eq. 11).
        dpd_alpha: alpha of the exp weight.
        dpd_clip: the exp weight is ``min(exp(alpha xi), dpd_clip) / mean``, the mean taken over the
            states the loss is applied on (the expected-visit distribution of ``dpd_states``' policy), as
            the deep backend does per minibatch and DPD's public code does; ``None`` is Eq. 11's
            unclipped, unnormalised ``exp(alpha xi)``. Default 10.0, the deep backend's.
        dpd_states: where the distillation states come from: ``"peer"`` (Eq. 11, ``s ~ pi~``, and
            Algorithm 1: a minibatch from the peer's buffer; the default) or ``"own"`` (the control's
            own trajectories, distlab's form before issue 8). The score term (``dpd+r``'s policy
            gradient) always uses the control's trajectories.

    Estimation (sampled backend only; the exact backend ignores them):
        step_unit: what one optimisation step consumes: ``"episode"`` (``episodes_per_step`` whole
            episodes) or ``"transitions"`` (exactly ``transitions_per_step`` transitions of the control
            as a fixed-length unroll; an episode in progress continues into the next step).
        transitions_per_step: N of ``"transitions"`` (required there, not allowed with ``"episode"``).
        baseline: subtracted from the score weight ``W_t``: ``"none"``, ``"exact"`` (the current
            student's exact expected return-to-go of the rule's ``rhat`` from ``s_t``) or ``"learned"``
            (a tabular every-visit Monte-Carlo critic of that return-to-go, step size ``baseline_lr``).
        baseline_lr: the learned critic's step size, in (0, 1].
        max_steps: the truncation knob: an episode is cut after ``max_steps`` transitions and treated as
            ended there (a bias; a warning counts them). Lower it to trade bias for variance.
    """

    loss: str | None = None
    control: str | None = None
    beta: float = 0.5
    exploration: str = "none"
    epsilon: float = 0.1
    temperature: float = 1.0
    teacher_temperature: float = 1.0
    dpd_weight: str = "exp"
    dpd_alpha: float = 1.0
    dpd_clip: float | None = 10.0
    dpd_states: str = "peer"
    step_unit: str = "episode"
    transitions_per_step: int | None = None
    baseline: str = "none"
    baseline_lr: float = 0.1
    max_steps: int = 10_000

    def __post_init__(self):
        if self.loss is not None:
            _check_choice("loss", self.loss, rules.LOSSES)
        if self.control is not None:
            _check_choice("control", self.control, rules.CONTROLS)
        _check_choice("exploration", self.exploration, rules.EXPLORATIONS)
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta (the teacher's weight in the mixture control) must be in [0, 1]; got {self.beta!r}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1]; got {self.epsilon!r}")
        if not self.temperature > 0.0:
            raise ValueError(f"temperature (Boltzmann exploration) must be > 0; got {self.temperature!r}")
        if not self.teacher_temperature > 0.0:
            raise ValueError(f"teacher_temperature must be > 0; got {self.teacher_temperature!r}")
        _check_choice("dpd_weight", self.dpd_weight, DPD_WEIGHTS)
        if not math.isfinite(self.dpd_alpha):
            raise ValueError(f"dpd_alpha must be finite; got {self.dpd_alpha!r}")
        if self.dpd_clip is not None and not (self.dpd_clip > 0.0 and math.isfinite(self.dpd_clip)):
            raise ValueError(f"dpd_clip must be a finite number > 0, or None (unclipped); got {self.dpd_clip!r}")
        _check_choice("dpd_states", self.dpd_states, DPD_STATES)
        _check_choice("step_unit", self.step_unit, STEP_UNITS)
        if self.step_unit == "transitions":
            if not (_is_int(self.transitions_per_step) and self.transitions_per_step >= 1):
                raise ValueError(f"step_unit='transitions' needs transitions_per_step, an integer >= 1; "
                                 f"got {self.transitions_per_step!r}")
        elif self.transitions_per_step is not None:
            raise ValueError(f"transitions_per_step={self.transitions_per_step!r} is for step_unit='transitions'; "
                             f"step_unit is {self.step_unit!r}")
        _check_choice("baseline", self.baseline, BASELINES)
        if not 0.0 < self.baseline_lr <= 1.0:
            raise ValueError(f"baseline_lr must be in (0, 1]; got {self.baseline_lr!r}")
        if not (_is_int(self.max_steps) and self.max_steps >= 1):
            raise ValueError(f"max_steps must be an integer >= 1; got {self.max_steps!r}")

    def replace(self, **changes) -> UpdateOptions:
        """A copy with ``changes`` (validated); unknown names raise ``TypeError`` naming the fields."""
        unknown = sorted(set(changes) - set(OPTION_NAMES))
        if unknown:
            raise TypeError(f"unknown option(s) {unknown}; UpdateOptions fields: {', '.join(OPTION_NAMES)}")
        return replace(self, **changes)


OPTION_NAMES = tuple(f.name for f in fields(UpdateOptions))


def split_keywords(function: str, options: UpdateOptions | None, keywords: dict,
                   data: tuple[str, ...] = DATA) -> tuple[UpdateOptions, dict]:
    """``(options, data)`` from a call's ``options`` and ``**keywords``.

    Keywords naming an :class:`UpdateOptions` field override ``options``; those in ``data`` (older
    spellings mapped by :data:`SPELLINGS`) are returned as a dict with one name each; anything else
    raises ``TypeError`` naming the valid keywords of ``function``.
    """
    if options is None:
        options = UpdateOptions()
    elif not isinstance(options, UpdateOptions):
        raise TypeError(f"{function}: options must be an UpdateOptions; got {type(options).__name__} "
                        "(pass option values as keywords, or UpdateOptions(...))")
    changes, given = {}, {}
    for key, value in keywords.items():
        name = SPELLINGS.get(key, key)
        if name in OPTION_NAMES:
            changes[name] = value
        elif name in data:
            if name in given:
                raise TypeError(f"{function}: {name!r} given twice (as {key!r} and under another spelling)")
            given[name] = value
        else:
            raise TypeError(f"{function}() got an unknown keyword {key!r}; valid: options "
                            f"{', '.join(OPTION_NAMES)}; data {', '.join(data)}")
    return (replace(options, **changes) if changes else options), given


def resolve(rule, options: UpdateOptions) -> rules.Rule:
    """The rule with ``options``' loss / control swapped in, after the checks that need the rule.

    The options themselves were validated when the :class:`UpdateOptions` was built; this adds what
    depends on the rule (exploration changes the student's behaviour, so it needs a control that uses
    the student).
    """
    rule = rules.get(rule)
    if options.loss is not None:
        rule = replace(rule, loss=options.loss)
    if options.control is not None:
        rule = replace(rule, control=options.control)
    if options.exploration != "none" and rule.control not in ("student", "mixture"):
        raise ValueError(
            f"exploration={options.exploration!r} changes the student's behaviour, but the control is "
            f"{rule.control!r}; use control 'student' or 'mixture'"
        )
    return rule
