"""The one registry of distillation update rules (tabular and deep backends alike).

Every rule yields an update direction ``g`` with the shape of the student's parameters, applied as
``theta <- theta - lr * g`` (Eq. 1 of *Distilling Policy Distillation*, Czarnecki et al., 2019):

    g = E_q [ sum_t  -grad log pi_theta(a_t|s_t) * W_t  +  gate(s_t) * grad l(pi_theta, s_t) ]

where the score weight ``W_t`` is, by the rule's ``score``:

* ``"return"``: the Monte-Carlo return ``Rhat_t = sum_{i>=t} rhat_i`` of the rule's reward ``rhat``
  (plus the environment reward ``r_i`` when ``env_reward``, the "+R" flag);
* ``"td-teacher-v"``: ``r_t + V_pi(s_{t+1})``, the actor-critic TD target bootstrapped from the
  teacher's value (Sec. 4.1, Prop. 3); ``"td-v0"``: the same with ``V_pi = 0`` (just ``r_t``).
  For these, "+R" adds the policy gradient of the return (the ``rl`` direction).

A rule is data: the triple (control policy ``q``, per-step loss ``l``, reward ``rhat``), the score
weight, an optional state gate, and the "+R" flag. The backends implement each *component* once
(exact expectations, sampled kernels, SAC losses); a rule combines components, so a user adds a rule in
one place::

    from distlab import rules
    rules.register(rules.Rule("my-rule", control="student", loss="reverse-hx", reward="log-teacher",
                              doc="...", gradient_of=None))

and gets ``"my-rule"`` and ``"my-rule+r"`` everywhere (``rules.names()``, the exact and sampled
backends, the diagnostics, the CLI).

Components
----------
control ``q``: ``"teacher"`` (pi), ``"student"`` (pi_theta), ``"uniform"`` (1/|A| in every state),
    ``"mixture"`` (``beta * pi + (1 - beta) * pi_theta``, Ross et al.'s DAgger-style mixing; ``beta``
    is a backend option, 0.5 by default). Backends accept ``control=...`` to swap the control of a
    rule (Sec. 3.2 compares teacher, student and uniform control).

exploration (a backend option, not part of a rule): the student's behaviour wherever the control
    uses the student (``"student"``, ``"mixture"``), seed 003 Sec. 3.4: ``"none"`` (pi_theta itself),
    ``"greedy"`` (argmax of the logits, ties split evenly), ``"epsilon-greedy"`` (``(1 - eps) greedy +
    eps uniform``), ``"boltzmann"`` (softmax of logits / temperature). See ``distlab.student.explore``.

loss ``l(pi_theta, s)`` (a distribution over actions in one state; ``pi`` the teacher):
    ``"none"``; ``"hx"`` = Hx(pi || pi_theta) = -sum_a pi(a) log pi_theta(a);
    ``"reverse-hx"`` = Hx(pi_theta || pi) = -sum_a pi_theta(a) log pi(a);
    ``"kl"`` = KL(pi || pi_theta); ``"reverse-kl"`` = KL(pi_theta || pi);
    ``"mse-logits"`` = 1/2 ||logits_theta - log pi||^2 (both centred); ``"nll-argmax"`` =
    -log pi_theta(argmax_a pi(a)).  Backends accept ``loss=...`` to swap the loss of a rule (seed 003).

reward ``rhat_i`` (summed into Rhat_t from i = t):
    ``"none"``: 0;
    ``"log-teacher"``: log pi(a_i|s_i)                                      (entropy-regularised)
    ``"neg-next-loss"``: -l(pi(s_{i+1}), pi_theta(s_{i+1})), 0 past the end (n-distill, Theorem 2)
    ``"log-teacher-next"``: log pi(a_{i+1}|s_{i+1}), 0 past the end         (expected-entropy)
    ``"teacher-v-shaping"``: V_pi(s_{i+1}) - V_pi(s_i), V_pi = 0 past the end (teacher-v-reward, Sec 4.2;
        Table 1 prints ``- V_pi_theta(s_i)``: distlab follows Sec. 4.2, see the rule's doc)
    The correction ``"neg-next-loss"`` uses the loss as applied, ``w(s_{i+1}) l(s_{i+1})`` with the loss
    weight ``w`` = gate * ``loss_mask``; the log-teacher rewards are multiplied by ``loss_mask(s)``
    (a backend option: the states where the teacher gives a signal, default all; the Fig. 2
    counterexample declares one in ``mdp.info["loss_mask"]``). ``log pi`` is floored at
    ``log(1e-12)`` (``distlab.student.LOG_FLOOR``) so that deterministic teachers stay finite.

gate ``w(s)`` multiplying the loss:
    ``"none"``: 1;  ``"value"``: 1[V_pi(s) > V_pi_theta(s)] (Prop. 2);
    ``"dpd"``: DPD (Lai et al., 2020, Eqs. 9 and 11) with ``xi = V_peer(s) - V_self(s)``, weight
    ``1[xi > 0]`` (``dpd_weight="indicator"``) or ``exp(alpha * xi)`` (``"exp"``). The sign is the
    paper's: a state where the *peer* is better is where the student distils. (The public DPD code uses
    opposite signs in its DDPG and PPO parts; distlab follows the paper.) The exp weight's clipping and
    normalisation (``dpd_clip``) and the state distribution of the loss (``dpd_states``, Eq. 11 takes
    ``s ~ pi~``, the peer) are options: :class:`distlab.options.UpdateOptions`.

Options (loss / control swaps, exploration, temperatures, DPD weight, step unit, baseline, ...) are one
frozen dataclass, :class:`distlab.options.UpdateOptions`, validated once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = [
    "Rule",
    "register",
    "get",
    "DPD_WEIGHTS",
    "names",
    "base_names",
    "CONTROLS",
    "LOSSES",
    "REWARDS",
    "SCORES",
    "GATES",
    "EXPLORATIONS",
    "PLUS_R_SUFFIX",
]

CONTROLS = ("teacher", "student", "uniform", "mixture")
LOSSES = ("none", "hx", "reverse-hx", "kl", "reverse-kl", "mse-logits", "nll-argmax")
REWARDS = ("none", "log-teacher", "neg-next-loss", "log-teacher-next", "teacher-v-shaping")
SCORES = ("return", "td-teacher-v", "td-v0")
GATES = ("none", "value", "dpd")
EXPLORATIONS = ("none", "greedy", "epsilon-greedy", "boltzmann")
DPD_WEIGHTS = ("exp", "indicator")
PLUS_R_SUFFIX = "+r"


@dataclass(frozen=True)
class Rule:
    """One update rule of Eq. 1 (see the module docstring for the components).

    Attributes:
        name: CLI spelling, e.g. ``"n-distill"``; the "+R" variant is ``name + "+r"``.
        control: the control policy ``q`` that generates trajectories.
        loss: the per-step loss ``l``.
        reward: the reward ``rhat`` whose return weights the score function.
        score: what weights ``-grad log pi_theta(a_t|s_t)``: the return of ``rhat`` or a TD target.
        gate: a per-state weight on the loss.
        env_reward: the "+R" flag: the environment reward is added (``rhat + r``, or the ``rl`` term).
        has_plus_r: whether a "+R" variant is registered with the rule.
        gradient_of: the objective whose gradient this field is (``None``: not a gradient field).
        doc: the rule's equations and source, shown by ``distlab rules``.
    """

    name: str
    control: str = "student"
    loss: str = "none"
    reward: str = "none"
    score: str = "return"
    gate: str = "none"
    env_reward: bool = False
    has_plus_r: bool = True
    gradient_of: str | None = None
    doc: str = ""

    def __post_init__(self):
        for field, value, valid in (
            ("control", self.control, CONTROLS),
            ("loss", self.loss, LOSSES),
            ("reward", self.reward, REWARDS),
            ("score", self.score, SCORES),
            ("gate", self.gate, GATES),
        ):
            if value not in valid:
                raise ValueError(f"rule {self.name!r}: unknown {field} {value!r}; valid: {', '.join(valid)}")
        if not self.name:
            raise ValueError("a rule needs a name")

    @property
    def base(self) -> str:
        """The name without the "+r" suffix."""
        return self.name.removesuffix(PLUS_R_SUFFIX)

    @property
    def is_gradient(self) -> bool:
        return self.gradient_of is not None

    @property
    def uses_teacher_value(self) -> bool:
        return self.gate == "value" or self.reward == "teacher-v-shaping" or self.score == "td-teacher-v"

    @property
    def uses_student_value(self) -> bool:
        return self.gate in ("value", "dpd")


_REGISTRY: dict[str, Rule] = {}


def register(rule: Rule, *, overwrite: bool = False) -> Rule:
    """Add ``rule`` (and its ``+r`` variant when ``rule.has_plus_r``) to the registry."""
    variants = [rule]
    if rule.has_plus_r and not rule.env_reward:
        # X+r adds the environment reward: rhat -> rhat + r (Table 1), i.e. X + rl; it stays a gradient
        # field exactly when X is one (of the loss minus the return).
        grad = None if rule.gradient_of is None else f"{rule.gradient_of} - E_q[sum_t r_t]"
        variants.append(
            replace(rule, name=rule.name + PLUS_R_SUFFIX, env_reward=True, gradient_of=grad, doc=rule.doc + " Plus the environment reward (+R).")
        )
    for r in variants:
        if r.name in _REGISTRY and not overwrite:
            raise ValueError(f"rule {r.name!r} is already registered (pass overwrite=True to replace it)")
    for r in variants:
        _REGISTRY[r.name] = r
    return rule


def get(name: str | Rule) -> Rule:
    """The rule called ``name``; ``ValueError`` listing the valid names if there is none."""
    if isinstance(name, Rule):
        return name
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown rule {name!r}; valid rules: {', '.join(names())}") from None


def names() -> list[str]:
    """All registered rule names, in registration order (each base followed by its ``+r``)."""
    return list(_REGISTRY)


def base_names() -> list[str]:
    """Registered names without the "+r" variants."""
    return [n for n in _REGISTRY if not n.endswith(PLUS_R_SUFFIX)]


# ------------------------------------------------------------------------------------ the taxonomy
# Table 1 of Czarnecki et al. (2019) and Secs. 3-4; DPD (Lai et al., 2020).
register(Rule(
    "teacher", control="teacher", loss="hx", has_plus_r=False,
    gradient_of="E_pi[sum_t Hx(pi(s_t) || pi_theta(s_t))]",
    doc="Teacher distill: q = pi, l = Hx(pi || pi_theta), rhat = 0 (Rusu et al., 2015; Table 1).",
))
register(Rule(
    "on-policy", loss="hx",
    doc="On-policy distill: q = pi_theta, l = Hx(pi || pi_theta), rhat = 0. Not a gradient field "
        "(Theorem 1); converges in the tabular case (Prop. 1), can cycle with rewards (Fig. 2).",
))
register(Rule(
    "entropy-regularised", reward="log-teacher",
    gradient_of="E_pi_theta[sum_t -log pi(a_t|s_t)]",
    doc="Entropy regularised: q = pi_theta, l = 0, rhat_i = log pi(a_i|s_i) (Table 1; [32, 27]).",
))
register(Rule(
    "n-distill", loss="hx", reward="neg-next-loss",
    gradient_of="E_pi_theta[sum_t Hx(pi(s_t) || pi_theta(s_t))]",
    doc="N-distill: on-policy distill plus rhat_i = -Hx(pi(s_{i+1}) || pi_theta(s_{i+1})) (Theorem 2).",
))
register(Rule(
    "expected-entropy", loss="reverse-hx", reward="log-teacher-next",
    gradient_of="E_pi_theta[sum_t -log pi(a_t|s_t)]",
    doc="Expected entropy regularised: q = pi_theta, l = Hx(pi_theta || pi), "
        "rhat_i = log pi(a_{i+1}|s_{i+1}) (Sec. 3.3; Theorem 2).",
))
register(Rule(
    "teacher-v-reward", reward="teacher-v-shaping", env_reward=True, has_plus_r=False,
    gradient_of="-E_pi_theta[sum_t r_t] (+ the constant V_pi(s_1))",
    doc="Teacher V reward: q = pi_theta, rhat_i = r_i + V_pi(s_{i+1}) - V_pi(s_i) (Sec. 4.2, Prop. 4). "
        "Table 1 of the paper prints the reward as r + V_pi(s') - V_pi_theta(s); distlab follows Sec. 4.2's "
        "r + V_pi(s') - V_pi(s), which is what Table 1's own Loss column (the return, up to the constant "
        "V_pi(s_1)) and Prop. 4 need: with V_pi_theta(s) the shaping would not telescope to a constant. "
        "With exact returns the shaping telescopes to -V_pi(s_t), a baseline, so the expected update "
        "equals rl's; it changes what a *learner* sees (an actor-critic with a TD critic), which is what "
        "the studies use.",
))
register(Rule(
    "value-gated", loss="hx", gate="value",
    doc="Value-gated distill: l = Hx(pi || pi_theta) * 1[V_pi(s) > V_pi_theta(s)] (Sec. 4, Prop. 2).",
))
register(Rule(
    "td-teacher-v", score="td-teacher-v",
    doc="TD + V_pi: grad log pi_theta(a_t|s_t) [r_t + V_pi(s_{t+1})] (Sec. 4.1, Prop. 3).",
))
register(Rule(
    "td-v0", score="td-v0",
    doc="TD + V_0: td-teacher-v with a teacher value of 0 everywhere (Sec. 4.1, Fig. 5).",
))
register(Rule(
    "rl", env_reward=True, has_plus_r=False,
    gradient_of="-E_pi_theta[sum_t r_t]",
    doc="REINFORCE policy gradient of the return; no distillation (Williams, 1992).",
))
register(Rule(
    "dpd", loss="hx", gate="dpd",
    doc="Dual policy distillation: l = w(xi(s)) Hx(pi_peer || pi_theta), xi = V_peer(s) - V_self(s), "
        "w = 1[xi > 0] or exp(alpha xi) (Lai et al., 2020, Eqs. 9, 11; the paper's sign). Not a gradient field "
        "on the learner's own states (dpd_states='own', as on-policy, Theorem 1); on the peer's states (Eq. 11, "
        "s ~ pi~, the default) and with the gate held fixed it is the gradient of "
        "E_{s~pi~}[w(s) Hx(pi~(s) || pi_theta(s))].",
))
