"""Hyperparameters of the deep backend, one dataclass each, with the papers' defaults.

``SACConfig``: Soft Actor-Critic as in Haarnoja et al. (2018b, "SAC algorithms and applications",
Table 1): 2 x 256 ReLU MLPs, Adam 3e-4, batch 256, gamma 0.99, tau 0.005, automatic entropy tuning
towards the target entropy -|A|, one gradient step per environment step (per ensemble member), and
10k uniformly random warm-up steps.

``TrainConfig``: what one run is (environment, method, ensemble, distillation schedule, evaluation,
checkpointing). PIEKD defaults (Hong et al., Sec. 5.1): K = 3, distillation interval I = 5000 env steps,
performance window M = 5 episodes, distillation from step 10k. DPD defaults (Lai et al., Sec. 4.2): K = 2,
distillation batches of 64 from the most recent 1000 transitions, learning rate 1e-4.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

__all__ = ["SACConfig", "TrainConfig", "METHODS", "ELECTIONS", "DISTILL_MODES", "SCHEDULES", "COMPILE_MODES",
           "MethodSpec", "method_spec", "resolve", "with_overrides"]


@dataclass(frozen=True)
class SACConfig:
    """SAC (Haarnoja et al., 2018b), the paper's hyperparameters."""

    hidden_layers: int = 2
    width: int = 256
    lr: float = 3e-4
    batch_size: int = 256
    gamma: float = 0.99
    tau: float = 0.005
    buffer_size: int = 1_000_000
    warmup_steps: int = 10_000  # uniformly random actions, no updates, before the first gradient step
    updates_per_step: int = 1  # gradient steps per env step, for every member
    init_alpha: float = 1.0
    target_entropy: float | None = None  # None: -|A| (the paper's heuristic)
    log_std_min: float = -20.0
    log_std_max: float = 2.0


@dataclass(frozen=True)
class MethodSpec:
    """What a ``--method`` means: ensemble size default and what happens every I env steps.

    periodic: ``"none"``, ``"distill"`` (PIEKD's step or a rule's), ``"extra"`` (extra SAC updates, as many
    as distillation would make), ``"hardcopy"`` (copy the teacher's networks into the students).
    """

    default_k: int
    periodic: str
    election: str | None = None  # forced election strategy (piekd-random-teacher)
    peer: bool = False  # DPD: each member distils from the other at every step
    single: bool = False  # a single agent: K must be 1


METHODS: dict[str, MethodSpec] = {
    "sac": MethodSpec(1, "none", single=True),
    "ensemble-sac": MethodSpec(3, "none"),
    "sac-extra": MethodSpec(1, "extra", single=True),
    "ensemble-sac-extra": MethodSpec(3, "extra"),
    "piekd": MethodSpec(3, "distill"),
    "piekd-hardcopy": MethodSpec(3, "hardcopy"),
    "piekd-random-teacher": MethodSpec(3, "distill", election="random"),
    "dpd": MethodSpec(2, "none", peer=True),
}
ELECTIONS = ("best", "random", "epsilon-greedy", "ucb1", "thompson")
DISTILL_MODES = ("sampled", "faithful")
SCHEDULES = ("auto", "periodic", "every-step")
COMPILE_MODES = ("none", "default", "reduce-overhead")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``None`` fields take the method's default (see :func:`resolve`)."""

    env: str = "HalfCheetah-v5"
    method: str = "piekd"
    k: int | None = None
    steps: int = 1_000_000
    seed: int = 0
    device: str = "cpu"
    out: str | None = None
    sac: SACConfig = field(default_factory=SACConfig)
    widths: tuple[int, ...] | None = None  # per-member hidden width (heterogeneous ensembles, CIKD Sec. 5.5)
    # ---- distillation (PIEKD, Hong et al. Alg. 1; rules of distlab.rules)
    rule: str | None = None  # None: PIEKD's step (KL policy + L2 critic distillation)
    teacher: str | None = None  # frozen teacher checkpoint (path[:member]) instead of an elected member
    election: str = "best"
    schedule: str = "auto"  # auto: every-step for a rule with a frozen teacher, periodic otherwise
    distill_start: int = 10_000
    distill_interval: int = 5_000  # I
    perf_window: int = 5  # M: R_k = mean of the member's last M training returns
    distill_mode: str = "sampled"
    distill_batches: int = 1_000  # N random minibatches per phase in "sampled" mode
    distill_epochs: int = 5  # "faithful" mode: epochs over the buffer in contiguous blocks
    distill_lr: float = 1e-3  # fresh Adam per phase, as the public PIEKD code
    epsilon: float = 0.1  # epsilon-greedy election
    ucb_c: float = 1.0  # UCB1 exploration coefficient (times the spread of bandit rewards)
    # ---- DPD (Lai et al., 2020)
    dpd_weight: str = "exp"  # "indicator" (Eq. 9) or "exp" (Eq. 11)
    dpd_alpha: float = 1.0
    dpd_clip: float = 10.0  # exp weights are clipped to this before batch normalisation
    dpd_batch: int = 64
    dpd_recent: int = 1_000
    dpd_lr: float = 1e-4
    # ---- evaluation, logging, reliability
    eval_every: int = 10_000
    eval_episodes: int = 20
    checkpoint_every: int = 10_000
    nan_check_every: int = 1_000
    progress: bool = True
    compile: str = "none"  # torch.compile mode; "reduce-overhead" uses CUDA graphs

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        data = dict(data)
        sac = SACConfig(**data.pop("sac", {}))
        if data.get("widths") is not None:
            data["widths"] = tuple(data["widths"])
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {sorted(unknown)}; valid: {sorted(known)}")
        return cls(sac=sac, **data)


def method_spec(method: str) -> MethodSpec:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[method]


def with_overrides(cfg: TrainConfig, **overrides) -> TrainConfig:
    """``cfg`` with fields replaced; keys ``sac.<name>`` replace fields of the nested SACConfig."""
    sac_over = {k.split(".", 1)[1]: v for k, v in overrides.items() if k.startswith("sac.")}
    top = {k: v for k, v in overrides.items() if not k.startswith("sac.")}
    valid_sac = {f.name for f in fields(SACConfig)}
    bad = set(sac_over) - valid_sac
    if bad:
        raise ValueError(f"unknown SAC setting(s) {sorted(bad)}; valid: {sorted(valid_sac)}")
    valid_top = {f.name for f in fields(TrainConfig)}
    bad = set(top) - valid_top
    if bad:
        raise ValueError(f"unknown training setting(s) {sorted(bad)}; valid: {sorted(valid_top)}")
    return replace(cfg, sac=replace(cfg.sac, **sac_over), **top)


def resolve(cfg: TrainConfig) -> TrainConfig:
    """Fill the method's defaults and check every argument, before any work starts (ValueError).

    Checks: env exists (gymnasium registry, Box actions), method, K >= 1 (K = 1 for single-agent methods,
    K = 2 for dpd, K >= 2 for elected teachers), rule (registry, and every component mapped to SAC),
    election, widths, schedules and positive counts.
    """
    from distlab import rules

    from deep.envs import check_env_id

    spec = method_spec(cfg.method)
    check_env_id(cfg.env)
    k = spec.default_k if cfg.k is None else int(cfg.k)
    if k < 1:
        raise ValueError(f"k must be >= 1 (ensemble size); got {k}")
    if spec.single and k != 1:
        raise ValueError(f"method {cfg.method!r} is a single agent: k must be 1, got {k} (use ensemble-{cfg.method})")
    if spec.peer and k != 2:
        raise ValueError(f"method 'dpd' distils between two peers: k must be 2, got {k}")
    election = spec.election or cfg.election
    if cfg.election not in ELECTIONS:
        raise ValueError(f"unknown election {cfg.election!r}; valid: {', '.join(ELECTIONS)}")
    if spec.election and cfg.election not in ("best", spec.election):
        raise ValueError(f"method {cfg.method!r} fixes the election to {spec.election!r}; got --election {cfg.election!r}")
    if cfg.rule is not None:
        rule = rules.get(cfg.rule)  # ValueError listing valid rules
        if spec.periodic != "distill":
            raise ValueError(f"--rule applies to the distillation step of piekd / piekd-random-teacher; "
                             f"method {cfg.method!r} has none")
        from deep.distill import check_rule_supported

        check_rule_supported(rule)
    if cfg.teacher is not None and spec.periodic != "distill":
        raise ValueError(f"--teacher applies to piekd (distil from a frozen teacher); method {cfg.method!r} has no distillation step")
    if spec.periodic in ("distill", "hardcopy") and cfg.teacher is None and k < 2:
        raise ValueError(f"method {cfg.method!r} elects a teacher among the members: k must be >= 2, got {k} "
                         f"(or give a frozen --teacher)")
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {cfg.schedule!r}; valid: {', '.join(SCHEDULES)}")
    schedule = cfg.schedule
    if schedule == "auto":
        schedule = "every-step" if (cfg.teacher is not None and cfg.rule is not None) else "periodic"
    if schedule == "every-step" and cfg.rule is None:
        raise ValueError("schedule 'every-step' needs a --rule (PIEKD's own step is periodic)")
    if schedule == "every-step" and cfg.teacher is None:
        raise ValueError("schedule 'every-step' distils from a frozen --teacher; an elected member needs 'periodic'")
    if cfg.distill_mode not in DISTILL_MODES:
        raise ValueError(f"unknown distill mode {cfg.distill_mode!r}; valid: {', '.join(DISTILL_MODES)}")
    if cfg.dpd_weight not in ("indicator", "exp"):
        raise ValueError(f"unknown dpd weight {cfg.dpd_weight!r}; valid: indicator, exp")
    if cfg.compile not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {cfg.compile!r}; valid: {', '.join(COMPILE_MODES)}")
    if cfg.device != "cpu" and not cfg.device.startswith("cuda"):
        raise ValueError(f"unknown device {cfg.device!r}; valid: cpu, cuda, cuda:N")
    widths = cfg.widths
    if widths is None:
        widths = (cfg.sac.width,) * k
    widths = tuple(int(w) for w in widths)
    if len(widths) == 1 and k > 1:
        widths = widths * k
    if len(widths) != k or min(widths) < 1:
        raise ValueError(f"widths must give one positive width per member (k = {k}); got {cfg.widths}")
    if spec.periodic == "hardcopy" and len(set(widths)) > 1:
        raise ValueError(f"piekd-hardcopy copies parameters: all widths must be equal; got {widths}")
    for name in ("steps", "eval_every", "eval_episodes", "checkpoint_every", "distill_interval", "perf_window",
                 "distill_batches", "distill_epochs", "nan_check_every", "dpd_batch", "dpd_recent"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1; got {getattr(cfg, name)}")
    for name in ("batch_size", "hidden_layers", "width", "buffer_size", "updates_per_step"):
        if getattr(cfg.sac, name) < 1:
            raise ValueError(f"sac.{name} must be >= 1; got {getattr(cfg.sac, name)}")
    if not 0.0 <= cfg.epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1]; got {cfg.epsilon}")
    return replace(cfg, k=k, widths=widths, election=election, schedule=schedule)
