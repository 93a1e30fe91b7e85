"""Hyperparameters of the deep backend, one dataclass each, with the papers' defaults.

``SACConfig``: Soft Actor-Critic as in Haarnoja et al. (2018b, "SAC algorithms and applications",
Table 1): 2 x 256 ReLU MLPs, Adam 3e-4, batch 256, gamma 0.99, tau 0.005, automatic entropy tuning
towards the target entropy -|A|, one gradient step per environment step (per ensemble member), and
10k uniformly random warm-up steps.

``RuleMapping``: how a taxonomy rule becomes a SAC update (``deep.distill``): every choice the paper does
not fix (weights, temperature, n-distill's correction, the td score's critic, "+r" on a td score, soft or
hard values in a gate, warm-up data under teacher control), each default documented as a choice.

``TrainConfig``: what one run is (environment, method, ensemble, distillation schedule, evaluation,
checkpointing). PIEKD defaults (Hong et al., Sec. 5.1): K = 3, distillation interval I = 5000 env steps,
performance window M = 5 episodes, distillation from step 10k. DPD defaults (Lai et al., Sec. 4.2): K = 2,
distillation batches of 64 from the most recent 1000 transitions, learning rate 1e-4.

Every field carries its help text; ``distlab train``'s options are generated from these fields
(``deep.cli``), so a new hyperparameter is one line here. This module imports nothing of ``deep``:
what a method *does* lives in ``deep.methods``, which also resolves a config against its method.
:func:`check_values` refuses a bad value naming the option (``ConfigError``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

__all__ = ["SACConfig", "RuleMapping", "TrainConfig", "NESTED", "TEMPERATURES", "ND_CORRECTIONS", "TD_CRITICS",
           "TD_PLUS_R", "VALUE_GATES", "TEACHER_WARMUPS", "ConfigError", "ELECTIONS", "DISTILL_MODES", "SCHEDULES", "COMPILE_MODES",
           "DPD_WEIGHTS", "DPD_STATES", "with_overrides", "check_values", "parse_widths", "option_help"]

ELECTIONS = ("best", "random", "epsilon-greedy", "ucb1", "thompson")
DISTILL_MODES = ("sampled", "faithful")
SCHEDULES = ("auto", "periodic", "every-step")
COMPILE_MODES = ("none", "default", "reduce-overhead")
DPD_WEIGHTS = ("indicator", "exp")
DPD_STATES = ("peer", "recent")
TEMPERATURES = ("auto", "fixed", "none")
ND_CORRECTIONS = ("hx", "kl")
TD_CRITICS = ("learned", "teacher")
TD_PLUS_R = ("average", "separate")
VALUE_GATES = ("soft", "hard")
TEACHER_WARMUPS = ("include", "exclude")


class ConfigError(ValueError):
    """An invalid setting; the message names the option and the valid values (a usage error on the CLI)."""


def _opt(default, help: str, **meta):
    """A dataclass field with its help text (read by the CLI generator)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults need default_factory")
    return field(default=default, metadata=dict(help=help, **meta))


@dataclass(frozen=True)
class SACConfig:
    """SAC (Haarnoja et al., 2018b), the paper's hyperparameters."""

    hidden_layers: int = _opt(2, "hidden layers of every MLP")
    width: int = _opt(256, "hidden width (default of every member; see --widths)")
    lr: float = _opt(3e-4, "Adam learning rate of actor, critics and temperature")
    batch_size: int = _opt(256, "minibatch size per member")
    gamma: float = _opt(0.99, "discount")
    tau: float = _opt(0.005, "Polyak rate of the target critics")
    buffer_size: int = _opt(1_000_000, "replay capacity (transitions)")
    warmup_steps: int = _opt(10_000, "uniformly random actions, no updates, before the first gradient step")
    updates_per_step: int = _opt(1, "gradient steps per env step, for every member")
    init_alpha: float = _opt(1.0, "initial entropy temperature")
    target_entropy: float | None = _opt(None, "target entropy (default -|A|, the paper's heuristic)")
    log_std_min: float = _opt(-20.0, "lower clamp of the policy's log std")
    log_std_max: float = _opt(2.0, "upper clamp of the policy's log std")


@dataclass(frozen=True)
class RuleMapping:
    """How a rule of ``distlab.rules`` becomes a SAC update (``deep.distill``, issue 15): the choices the
    taxonomy paper does not fix for continuous actions and function approximation. Each default is the
    reading the study ran with before these were options, kept so that results stay comparable; the
    ``mujoco-rules`` checks (``deep.rules_study.CHECKS``) move each one that could flip a verdict.

    * weights: Eq. 1 adds the loss gradient and the score-function term with weight 1 each, and "+R"
      adds r to rhat with weight 1 (Table 1); distlab keeps 1, 1, 1.
    * temperature: SAC's tuned alpha (``auto``, target ``sac.target_entropy``) is distlab's default for
      every rule whose critic carries a return, because the student is a SAC agent; Table 1 has no
      student-entropy term, so ``none`` (alpha = 0 in the rule's values and actor) is the literal reading
      and ``fixed`` keeps ``sac.init_alpha``.
    * n-distill's correction: Table 1's reward is -Hx(pi_t(s'), pi_k(s')) (``hx``); ``kl`` drops the
      teacher's entropy H(pi_t(s')), a term the student cannot change that is unbounded for a squashed
      Gaussian (it pays the student for reaching states where the teacher saturates).
    * the td score's critic: ``learned`` (the student's critic regresses on r + gamma V_t(s'), from
      zero) or ``teacher`` (the teacher's min_j Q_t,j(s, a): the fixed point of that regression when
      V_t is the teacher's soft value, so the critic the rule converges to, given at once).
    * "+r" on a td score (score r + V_t plus the rl direction): ``average`` = one learned critic on
      r + gamma (V_t(s') + V_k(s')) / 2 (distlab's first reading: by algebra the student's own value enters
      at gamma / 2, so it is not the sum of the two directions); ``separate`` = one critic per direction,
      the teacher's Q_t for the td direction and the student's own SAC critic (r + gamma V_k) for the
      return, the actor ascending their mean (the two directions added, up to a factor 2). ``separate``
      needs ``td_critic=teacher`` (one learned critic per member).
    * value gate: compares soft values V = min_j Q_j - alpha log pi (``soft``, the SAC critics' own
      quantity) or hard ones min_j Q_j (``hard``): the teacher's and the student's temperatures differ
      (e.g. 0.05 against 1 -> 0.3), so soft values compare different objectives.
    * warm-up data under teacher control: the student's first ``sac.warmup_steps`` transitions are uniform
      random actions; ``include`` keeps them in the teacher-controlled rule's minibatches (as every other
      rule's), ``exclude`` draws that rule's minibatches from the teacher's transitions only (q = pi_t).
    """

    loss_weight: float = _opt(1.0, "weight of the rule's imitation loss l in the actor loss (Eq. 1: 1)")
    reward_weight: float = _opt(1.0, "weight of the rule's reward rhat in the critic target (Eq. 1: 1)")
    env_reward_weight: float = _opt(1.0, "weight of the env reward r where the rule uses it (+r, td scores; Table 1: 1)")
    temperature: str = _opt("auto", "the student's entropy temperature in a rule's update: auto (SAC's tuning towards "
                                    "sac.target_entropy), fixed (sac.init_alpha), none (alpha = 0: Table 1's objective)")
    nd_correction: str = _opt("hx", "n-distill's reward at s': hx (-Hx, Table 1) or kl (-KL: without the teacher's entropy)")
    td_critic: str = _opt("learned", "critic of the td-teacher-v score: learned (regresses on r + gamma V_t) or teacher (Q_t)")
    td_plus_r: str = _opt("average", "+r on a td score: average (one critic on r + gamma (V_t + V_k) / 2) or separate "
                                     "(teacher's Q_t and the student's SAC critic, actor on their mean; needs td_critic=teacher)")
    value_gate: str = _opt("soft", "values a gate compares: soft (min Q - alpha log pi) or hard (min Q)")
    teacher_warmup: str = _opt("include", "teacher-controlled rule: include or exclude the uniform warm-up transitions "
                                          "in its minibatches")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``None`` fields take the method's default (see ``deep.methods.resolve``)."""

    env: str = _opt("HalfCheetah-v5", "gymnasium env id, e.g. HalfCheetah-v5, Hopper-v5, Pendulum-v1")
    method: str = _opt("piekd", "sac, ensemble-sac, sac-extra, ensemble-sac-extra, piekd, piekd-hardcopy, "
                                "piekd-random-teacher, dpd (see `deep.methods`)")
    k: int | None = _opt(None, "ensemble size (default: the method's: 1 sac, 2 dpd, 3 otherwise)")
    steps: int = _opt(1_000_000, "environment steps (with --resume: extend a finished run to this many)")
    seed: int = _opt(0, "seed of every RNG of the run")
    device: str = _opt("cpu", "cpu or cuda[:N]")
    out: str | None = _opt(None, "run directory (tables, checkpoint); default results/deep/ENV_METHOD_sSEED")
    sac: SACConfig = field(default_factory=SACConfig)
    mapping: RuleMapping = field(default_factory=RuleMapping)
    widths: tuple[int, ...] | None = _opt(None, "per-member hidden widths, e.g. 256,1024 (CIKD Sec. 5.5)", parse="widths")
    # ---- distillation (PIEKD, Hong et al. Alg. 1; rules of distlab.rules)
    rule: str | None = _opt(None, "distillation rule of `distlab rules` replacing PIEKD's KL + critic-L2 step")
    teacher: str | None = _opt(None, "frozen teacher: an exported teacher file, or a run directory / checkpoint.pt[:MEMBER]")
    election: str = _opt("best", "teacher election: " + ", ".join(ELECTIONS))
    schedule: str = _opt("auto", "auto (every-step for a rule with a frozen teacher, else periodic), periodic, every-step")
    distill_start: int = _opt(10_000, "first env step of a distillation phase")
    distill_interval: int = _opt(5_000, "I: env steps between distillation phases")
    perf_window: int = _opt(5, "M: R_k = mean of the member's last M training returns")
    distill_mode: str = _opt("sampled", "sampled (N random minibatches) or faithful (public PIEKD code: epochs over "
                                        "the buffer in shuffled contiguous blocks)")
    distill_batches: int = _opt(1_000, "N: minibatches per distillation phase (sampled mode)")
    distill_epochs: int = _opt(5, "epochs over the buffer per phase (faithful mode)")
    distill_lr: float = _opt(1e-3, "Adam learning rate of a phase (fresh Adam per phase, as the public PIEKD code)")
    epsilon: float = _opt(0.1, "epsilon of the epsilon-greedy election")
    ucb_c: float = _opt(1.0, "UCB1 exploration coefficient (times the spread of bandit rewards)")
    # ---- DPD (Lai et al., 2020)
    dpd_weight: str = _opt("exp", "DPD weight: indicator (Eq. 9) or exp (Eq. 11)")
    dpd_alpha: float = _opt(1.0, "DPD: alpha of exp(alpha xi)")
    dpd_clip: float = _opt(10.0, "DPD: exp weights are clipped to this before batch normalisation")
    dpd_batch: int = _opt(64, "DPD: distillation minibatch")
    dpd_recent: int = _opt(1_000, "DPD: distil on states of the last this-many transitions")
    dpd_states: str = _opt("peer", "DPD states: peer (transitions the peer collected, Eq. 11) or recent (any actor)")
    dpd_lr: float = _opt(1e-4, "DPD: Adam learning rate of the distillation step")
    # ---- evaluation, logging, reliability
    eval_every: int = _opt(10_000, "env steps between evaluations")
    eval_episodes: int = _opt(20, "deterministic episodes per member and evaluation")
    checkpoint_every: int = _opt(10_000, "env steps between checkpoints")
    nan_check_every: int = _opt(1_000, "env steps between NaN/inf checks of the losses")
    progress: bool = _opt(True, "show a progress bar")
    compile: str = _opt("none", "torch.compile mode: none, default, reduce-overhead (CUDA graphs)")
    env_workers: int = _opt(0, "worker processes stepping the runs' simulators (0: in this process; same numbers, deep.env_workers)")
    tensorboard: bool = _opt(True, "TensorBoard scalars in OUT/tb/ (CleanRL's tags); needs the extra distlab[tb], off without it")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Inverse of ``to_dict``; also reads configs of older versions (fields added since get defaults)."""
        data = dict(data)
        nested = {name: cls(**data.pop(name, {})) for name, cls in NESTED.items()}
        if data.get("widths") is not None:
            data["widths"] = tuple(data["widths"])
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {sorted(unknown)}; valid: {sorted(known)}")
        return cls(**nested, **data)


# The nested option groups of TrainConfig: ``--set NAME.field=value``, ``--NAME-field`` on the CLI.
NESTED = {"sac": SACConfig, "mapping": RuleMapping}


def option_help(cls, name: str) -> str:
    return next(f.metadata.get("help", "") for f in fields(cls) if f.name == name)


def parse_widths(value) -> tuple[int, ...] | None:
    """``"256,1024"`` / ``[256, 1024]`` / ``256`` -> (256, 1024); ConfigError naming --widths otherwise."""
    if value is None or isinstance(value, tuple) and all(isinstance(w, int) for w in value):
        return value
    items = value.split(",") if isinstance(value, str) else (list(value) if isinstance(value, (list, tuple)) else [value])
    try:
        widths = tuple(int(str(w).strip()) for w in items)
    except ValueError:
        raise ConfigError(f"--widths {value!r}: expected comma-separated positive integers, e.g. 256,1024") from None
    if not widths or min(widths) < 1:
        raise ConfigError(f"--widths {value!r}: every width must be a positive integer")
    return widths


def with_overrides(cfg: TrainConfig, **overrides) -> TrainConfig:
    """``cfg`` with fields replaced; keys ``sac.<name>`` / ``mapping.<name>`` replace fields of the nested
    SACConfig / RuleMapping."""
    nested = {name: {} for name in NESTED}
    top = {}
    for key, value in overrides.items():
        head, dot, tail = key.partition(".")
        if dot and head in NESTED:
            nested[head][tail] = value
        else:
            top[key] = value
    for name, cls in NESTED.items():
        valid = {f.name for f in fields(cls)}
        bad = set(nested[name]) - valid
        if bad:
            raise ConfigError(f"unknown {name} setting(s) {sorted(bad)}; valid: {sorted(valid)}")
    valid_top = {f.name for f in fields(TrainConfig)} - set(NESTED)
    bad = set(top) - valid_top
    if bad:
        raise ConfigError(f"unknown training setting(s) {sorted(bad)}; valid: {sorted(valid_top)}")
    if "widths" in top:
        top["widths"] = parse_widths(top["widths"])
    return replace(cfg, **{name: replace(getattr(cfg, name), **nested[name]) for name in NESTED}, **top)


def _typed(obj, prefix: str) -> None:
    """ConfigError if a field holds a value of the wrong type (e.g. ``--set sac.lr=fast``)."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.name in NESTED or value is None:
            continue
        kind = str(f.type)
        name = f"{prefix}{f.name}"
        if kind.startswith("int") and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"{name} must be an integer; got {value!r}")
        if kind.startswith("float") and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"{name} must be a number; got {value!r}")
        if kind.startswith("str") and not isinstance(value, str):
            raise ConfigError(f"{name} must be a string; got {value!r}")
        if kind == "bool" and not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false; got {value!r}")


def check_values(cfg: TrainConfig) -> None:
    """Value checks that need no method or environment (ConfigError naming the option and the valid range)."""
    _typed(cfg, "")
    _typed(cfg.sac, "sac.")
    _typed(cfg.mapping, "mapping.")

    def choice(name, valid):
        if getattr(cfg, name) not in valid:
            raise ConfigError(f"unknown {name.replace('_', ' ')} {getattr(cfg, name)!r}; valid: {', '.join(valid)}")

    choice("election", ELECTIONS)
    choice("schedule", SCHEDULES)
    choice("distill_mode", DISTILL_MODES)
    choice("dpd_weight", DPD_WEIGHTS)
    choice("dpd_states", DPD_STATES)
    if cfg.compile not in COMPILE_MODES:
        raise ConfigError(f"unknown compile mode {cfg.compile!r}; valid: {', '.join(COMPILE_MODES)}")
    if cfg.device != "cpu" and not cfg.device.startswith("cuda"):
        raise ConfigError(f"unknown device {cfg.device!r}; valid: cpu, cuda, cuda:N")
    for name in ("steps", "eval_every", "eval_episodes", "checkpoint_every", "distill_interval", "perf_window",
                 "distill_batches", "distill_epochs", "nan_check_every", "dpd_batch", "dpd_recent"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be >= 1; got {getattr(cfg, name)}")
    if cfg.env_workers < 0:
        raise ConfigError(f"env_workers must be >= 0 (0: step the simulators in this process); got {cfg.env_workers}")
    if cfg.distill_start < 0:
        raise ConfigError(f"distill_start must be >= 0; got {cfg.distill_start}")
    for name in ("batch_size", "hidden_layers", "width", "buffer_size", "updates_per_step"):
        if getattr(cfg.sac, name) < 1:
            raise ConfigError(f"sac.{name} must be >= 1; got {getattr(cfg.sac, name)}")
    if cfg.sac.warmup_steps < 0:
        raise ConfigError(f"sac.warmup_steps must be >= 0; got {cfg.sac.warmup_steps}")
    for name, value in (("sac.lr", cfg.sac.lr), ("distill_lr", cfg.distill_lr), ("dpd_lr", cfg.dpd_lr),
                        ("sac.init_alpha", cfg.sac.init_alpha), ("dpd_clip", cfg.dpd_clip)):
        if not value > 0:  # also refuses NaN
            raise ConfigError(f"{name} must be > 0; got {value}")
    if not 0.0 <= cfg.sac.gamma <= 1.0:
        raise ConfigError(f"sac.gamma must be in [0, 1]; got {cfg.sac.gamma}")
    if not 0.0 < cfg.sac.tau <= 1.0:
        raise ConfigError(f"sac.tau must be in (0, 1]; got {cfg.sac.tau}")
    if not 0.0 <= cfg.epsilon <= 1.0:
        raise ConfigError(f"epsilon must be in [0, 1]; got {cfg.epsilon}")
    if not (math.isfinite(cfg.ucb_c) and cfg.ucb_c >= 0):
        raise ConfigError(f"ucb_c must be >= 0; got {cfg.ucb_c}")
    _check_mapping(cfg.mapping)
    if not cfg.sac.log_std_min < cfg.sac.log_std_max:
        raise ConfigError(f"sac.log_std_min must be < sac.log_std_max; got {cfg.sac.log_std_min}, {cfg.sac.log_std_max}")


def _check_mapping(m: RuleMapping) -> None:
    """ConfigError naming the ``mapping.`` option and its valid values or range."""
    for name, valid in (("temperature", TEMPERATURES), ("nd_correction", ND_CORRECTIONS), ("td_critic", TD_CRITICS),
                        ("td_plus_r", TD_PLUS_R), ("value_gate", VALUE_GATES), ("teacher_warmup", TEACHER_WARMUPS)):
        if getattr(m, name) not in valid:
            raise ConfigError(f"unknown mapping.{name} {getattr(m, name)!r}; valid: {', '.join(valid)}")
    for name in ("loss_weight", "reward_weight", "env_reward_weight"):
        value = getattr(m, name)
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"mapping.{name} must be a finite number >= 0; got {value}")
    if m.td_plus_r == "separate" and m.td_critic != "teacher":
        raise ConfigError("mapping.td_plus_r 'separate' needs mapping.td_critic 'teacher' (the deep backend learns one "
                          "critic per member: the td direction's critic is then the teacher's Q_t)")
