"""The choices of a rule's SAC mapping (``deep.config.RuleMapping``, issue 15) against hand computations.

On a fixed batch, the critic target and the actor loss that ``deep.distill.rule_losses`` builds are
recomputed here from first principles: plain numpy-free torch MLP forwards over the raw parameter tensors
(not the ensemble's batched code path), Table 1's formulas, and the mapping's documented choice. The
policies act at their mode (the noise of ``deep.kl.squashed_sample`` is patched to 0), which makes every
quantity deterministic without changing any formula: a = tanh(mean), log pi(a|s) = log N(mean; mean, std)
- log|det tanh'|. Also: the defaults reproduce the pre-option update bit for bit (against a run of the
same code path with the options spelled out), the temperature modes step or freeze alpha, the warm-up
choice of the teacher-controlled rule draws only teacher rows, and the CLI / study carry the options.
"""

import math
from types import SimpleNamespace

import pytest
import torch

from deep import kl as deep_kl
from deep import rules_study as rs
from deep.config import ConfigError, RuleMapping, TrainConfig, check_values, with_overrides
from deep.distill import Teacher, check_mapping_for_rule, rule_losses
from deep.methods import TEACHER_ACTOR, WARMUP_ACTOR, resolve, rule_batch_indices
from deep.networks import Ensemble
from deep.replay import Batch, ReplayBuffer
from distlab import rules

OBS, ACT, B, GAMMA = 3, 2, 6, 0.9


@pytest.fixture(autouse=True)
def mode_actions(monkeypatch):
    """Every squashed sample sits at the policy's mode (noise 0): deterministic, same formulas."""
    monkeypatch.setattr(deep_kl, "normal", lambda shape, generator, device, dtype=torch.float32: torch.zeros(shape, dtype=dtype))


@pytest.fixture
def setup():
    torch.manual_seed(3)
    student = Ensemble(OBS, ACT, (16,), depth=2, init_alpha=0.7)
    teacher_net = Ensemble(OBS, ACT, (16,), depth=2, init_alpha=0.2)
    with torch.no_grad():  # distinct target critics, a distinct teacher temperature
        for p in student.groups[0].target_critic.parameters():
            p.add_(0.1 * torch.randn_like(p))
        teacher_net.log_alpha.fill_(math.log(0.2))
    teacher_net.requires_grad_(False)
    g = torch.Generator().manual_seed(5)
    batch = Batch(torch.randn(1, B, OBS, generator=g), torch.rand(1, B, ACT, generator=g) * 1.6 - 0.8,
                  torch.randn(1, B, generator=g), torch.randn(1, B, OBS, generator=g),
                  torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0, 1.0]]))
    return student, teacher_net, batch


# ------------------------------------------------------------------------------------------- by hand
def mlp(net, row, x):
    """Row ``row`` of an EnsembleMLP on x (N, in): x W + b, ReLU between layers (the weights' own layout)."""
    layers = list(net.layers)
    for i, layer in enumerate(layers):
        x = x @ layer.weight[row] + layer.bias[row, 0]
        if i < len(layers) - 1:
            x = torch.relu(x)
    return x


def policy(ens, obs):
    out = mlp(ens.groups[0].actor, 0, obs)
    return out[:, :ACT], out[:, ACT:].clamp(ens.log_std_min, ens.log_std_max)


def mode_action(ens, obs):
    """(a, log pi(a|s)) at the mode u = mean: Gaussian log-density of its own mean minus the tanh log-Jacobian."""
    mean, log_std = policy(ens, obs)
    a = torch.tanh(mean)
    log_prob = (-log_std - 0.5 * math.log(2 * math.pi)).sum(-1) - torch.log(1 - a.square()).sum(-1)
    return a, log_prob


def q_min(ens, obs, act, target=False):
    net = ens.groups[0].target_critic if target else ens.groups[0].critic
    x = torch.cat([obs, act], -1)
    return torch.minimum(mlp(net, 0, x), mlp(net, 1, x))[:, 0]


def value(ens, obs, alpha, target=False):
    a, log_prob = mode_action(ens, obs)
    return q_min(ens, obs, a, target) - alpha * log_prob


def kl(t, s):
    (tm, tl), (sm, sl) = t, s
    return (sl - tl + 0.5 * (torch.exp(2 * (tl - sl)) + (tm - sm).square() * torch.exp(-2 * sl)) - 0.5).sum(-1)


def hx(teacher_net, student, obs):
    """Hx(pi_t || pi_k) = KL + H(pi_t), H by one teacher sample (here its mode): -log pi_t(a_t)."""
    return kl(policy(teacher_net, obs), policy(student, obs)) - mode_action(teacher_net, obs)[1]


def alpha_of(ens):
    return ens.log_alpha.exp()[0]


def losses(student, teacher_net, batch, rule, critic_fallback=False, **mapping):
    gen = torch.Generator().manual_seed(0)
    rule = rules.get(rule)
    critic_loss, actor_fn = rule_losses(rule, student, Teacher(teacher_net, [0], gen), batch, torch.ones(1), GAMMA, gen,
                                        critic_fallback=critic_fallback, mapping=RuleMapping(**mapping))
    actor_loss, _ = actor_fn()
    return critic_loss, actor_loss


def critic_loss_of(student, batch, y):
    x = torch.cat([batch.obs[0], batch.act[0]], -1)
    net = student.groups[0].critic
    return sum(((mlp(net, j, x)[:, 0] - y).square().mean()) for j in (0, 1))


def close(a, b):
    assert a is not None and b is not None
    assert torch.allclose(a.detach().double(), torch.as_tensor(b).detach().double(), rtol=1e-5, atol=1e-5), (a, b)


# ------------------------------------------------------------------------------------------- n-distill
@pytest.mark.parametrize("correction", ["hx", "kl"])
@pytest.mark.parametrize("reward_weight", [1.0, 0.1])
@pytest.mark.parametrize("temperature", ["auto", "none"])
def test_n_distill_target_and_actor_by_hand(setup, correction, reward_weight, temperature):
    student, teacher_net, batch = setup
    critic, actor = losses(student, teacher_net, batch, "n-distill", nd_correction=correction, reward_weight=reward_weight,
                           loss_weight=0.5, temperature=temperature)
    s, s2, term = batch.obs[0], batch.next_obs[0], batch.terminated[0]
    alpha = alpha_of(student) if temperature == "auto" else 0.0
    with torch.no_grad():
        next_loss = hx(teacher_net, student, s2) if correction == "hx" else kl(policy(teacher_net, s2), policy(student, s2))
        y = reward_weight * -(1 - term) * next_loss + GAMMA * (1 - term) * value(student, s2, alpha, target=True)
    close(critic, critic_loss_of(student, batch, y))
    a, log_prob = mode_action(student, s)
    expected = (alpha * log_prob - q_min(student, s, a) + 0.5 * hx(teacher_net, student, s)).mean()
    close(actor, expected)


def test_the_kl_correction_differs_from_hx_by_the_teachers_entropy(setup):
    student, teacher_net, batch = setup
    c_hx, _ = losses(student, teacher_net, batch, "n-distill", nd_correction="hx")
    c_kl, _ = losses(student, teacher_net, batch, "n-distill", nd_correction="kl")
    assert not torch.allclose(c_hx, c_kl)  # the teacher's entropy at s' is not zero here


# ------------------------------------------------------------------------------------------- env reward, +r
@pytest.mark.parametrize("env_weight", [1.0, 0.25])
def test_on_policy_plus_r_target_by_hand(setup, env_weight):
    student, teacher_net, batch = setup
    critic, actor = losses(student, teacher_net, batch, "on-policy+r", env_reward_weight=env_weight)
    s, s2, term = batch.obs[0], batch.next_obs[0], batch.terminated[0]
    with torch.no_grad():
        y = env_weight * batch.rew[0] + GAMMA * (1 - term) * value(student, s2, alpha_of(student), target=True)
    close(critic, critic_loss_of(student, batch, y))
    a, log_prob = mode_action(student, s)
    close(actor, (alpha_of(student) * log_prob - q_min(student, s, a) + hx(teacher_net, student, s)).mean())


# ------------------------------------------------------------------------------------------- td score
def test_td_teacher_v_learned_critic_by_hand(setup):
    student, teacher_net, batch = setup
    critic, actor = losses(student, teacher_net, batch, "td-teacher-v")
    s, s2, term = batch.obs[0], batch.next_obs[0], batch.terminated[0]
    with torch.no_grad():
        y = batch.rew[0] + GAMMA * (1 - term) * value(teacher_net, s2, alpha_of(teacher_net))
    close(critic, critic_loss_of(student, batch, y))
    a, log_prob = mode_action(student, s)
    close(actor, (alpha_of(student) * log_prob - q_min(student, s, a)).mean())


def test_td_teacher_v_on_the_teachers_critic_by_hand(setup):
    student, teacher_net, batch = setup
    critic, actor = losses(student, teacher_net, batch, "td-teacher-v", td_critic="teacher")
    assert critic is None  # the student's critic is read by nobody: no critic step
    s = batch.obs[0]
    a, log_prob = mode_action(student, s)
    close(actor, (alpha_of(student) * log_prob - q_min(teacher_net, s, a)).mean())
    # the actor's gradient flows through the teacher's critic into the student's actor, never into the teacher
    actor.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.actor_parameters())
    assert all(p.grad is None for p in teacher_net.parameters())


def test_td_plus_r_average_bootstraps_by_hand(setup):
    """td-teacher-v+r, one critic: y = r + gamma (V_t(s') + V_k(s')) / 2 (what 'average' is, stated and tested)."""
    student, teacher_net, batch = setup
    critic, _ = losses(student, teacher_net, batch, "td-teacher-v+r")
    s2, term = batch.next_obs[0], batch.terminated[0]
    with torch.no_grad():
        boot = 0.5 * (value(teacher_net, s2, alpha_of(teacher_net)) + value(student, s2, alpha_of(student), target=True))
        y = batch.rew[0] + GAMMA * (1 - term) * boot
    close(critic, critic_loss_of(student, batch, y))


def test_td_plus_r_separate_critics_by_hand(setup):
    """td-teacher-v+r, one critic per direction: the student's own SAC critic (y = r + gamma V_k(s')) and the
    teacher's Q_t; the actor ascends their mean."""
    student, teacher_net, batch = setup
    critic, actor = losses(student, teacher_net, batch, "td-teacher-v+r", td_critic="teacher", td_plus_r="separate")
    s, s2, term = batch.obs[0], batch.next_obs[0], batch.terminated[0]
    with torch.no_grad():
        y = batch.rew[0] + GAMMA * (1 - term) * value(student, s2, alpha_of(student), target=True)
    close(critic, critic_loss_of(student, batch, y))
    a, log_prob = mode_action(student, s)
    close(actor, (alpha_of(student) * log_prob - 0.5 * (q_min(student, s, a) + q_min(teacher_net, s, a))).mean())


def test_inconsistent_td_choices_are_refused():
    with pytest.raises(ConfigError, match="td_plus_r 'separate' needs mapping.td_critic 'teacher'"):
        check_values(with_overrides(TrainConfig(), **{"mapping.td_plus_r": "separate"}))
    with pytest.raises(ValueError, match="needs mapping.td_plus_r 'separate'"):
        check_mapping_for_rule(rules.get("td-teacher-v+r"), RuleMapping(td_critic="teacher"))
    check_mapping_for_rule(rules.get("td-teacher-v"), RuleMapping(td_critic="teacher"))  # no +r: fine


# ------------------------------------------------------------------------------------------- value gate
@pytest.mark.parametrize("gate", ["soft", "hard"])
def test_value_gate_by_hand(setup, gate):
    student, teacher_net, batch = setup
    with torch.no_grad():  # a cool teacher, an entropic student (as on MuJoCo: 0.05 against 1 -> 0.3)
        teacher_net.log_alpha.fill_(math.log(0.01))
    _, actor = losses(student, teacher_net, batch, "value-gated", critic_fallback=True, value_gate=gate)
    s = batch.obs[0]
    with torch.no_grad():
        soft = gate == "soft"
        v_t = value(teacher_net, s, alpha_of(teacher_net) if soft else 0.0)
        v_k = value(student, s, alpha_of(student) if soft else 0.0)
        w = (v_t > v_k).float()
    close(actor, (w * hx(teacher_net, student, s)).mean())


def test_soft_and_hard_gates_disagree_somewhere(setup):
    """A cool teacher against an entropic student: the student's entropy bonus wins the soft comparison in every
    state here, the teacher's Q the hard one (checked by hand below), so the gate flips."""
    student, teacher_net, batch = setup
    with torch.no_grad():
        teacher_net.log_alpha.fill_(math.log(0.01))
        s = batch.obs[0]
        assert (value(teacher_net, s, 0.01) < value(student, s, alpha_of(student))).all()
        assert (value(teacher_net, s, 0.0) > value(student, s, 0.0)).all()
    _, soft = losses(student, teacher_net, batch, "value-gated", critic_fallback=True, value_gate="soft")
    _, hard = losses(student, teacher_net, batch, "value-gated", critic_fallback=True, value_gate="hard")
    assert not torch.allclose(soft, hard)


# ------------------------------------------------------------------------------------------- entropy-regularised
@pytest.mark.parametrize("temperature", ["auto", "fixed", "none"])
def test_entropy_regularised_by_hand(setup, temperature):
    student, teacher_net, batch = setup
    critic, actor = losses(student, teacher_net, batch, "entropy-regularised", temperature=temperature)
    s, s2, term = batch.obs[0], batch.next_obs[0], batch.terminated[0]
    alpha = 0.0 if temperature == "none" else alpha_of(student)
    with torch.no_grad():
        tm, tl = policy(teacher_net, s)
        u = torch.atanh(batch.act[0].clamp(-1 + 1e-6, 1 - 1e-6))
        log_teacher = (-0.5 * ((u - tm) / tl.exp()).square() - tl - 0.5 * math.log(2 * math.pi)).sum(-1) \
            - torch.log(1 - torch.tanh(u).square()).sum(-1)
        y = log_teacher + GAMMA * (1 - term) * value(student, s2, alpha, target=True)
    close(critic, critic_loss_of(student, batch, y))
    a, log_prob = mode_action(student, s)
    close(actor, (alpha * log_prob - q_min(student, s, a)).mean())


def test_temperature_modes_step_or_freeze_alpha(setup):
    """auto: SAC's temperature step; fixed and none: alpha never moves (rule_update on a minimal run)."""
    from deep.methods import rule_update
    from deep.sac import SACLearner

    student, teacher_net, _ = setup
    moved = {}
    for mode in ("auto", "fixed", "none"):
        ens = Ensemble(OBS, ACT, (16,), depth=2, init_alpha=0.7)
        ens.load_state_dict(student.state_dict())
        cfg = with_overrides(TrainConfig(k=1, rule="entropy-regularised"), **{"sac.batch_size": 8, "mapping.temperature": mode})
        gen = torch.Generator().manual_seed(0)
        buf = ReplayBuffer(32, OBS, ACT)
        for _ in range(32):
            buf.add(torch.randn(OBS).numpy(), (torch.rand(ACT) * 2 - 1).numpy(), 0.5, torch.randn(OBS).numpy(), False, 0)
        run = SimpleNamespace(cfg=cfg, ens=ens, learner=SACLearner(ens, cfg.sac, gen), buffer=buf, gen=gen, device="cpu",
                              frozen=SimpleNamespace(ensemble=teacher_net), track=lambda losses: None)
        before = ens.log_alpha.detach().clone()
        rule_update(run)
        moved[mode] = not torch.equal(before, ens.log_alpha.detach())
    assert moved == {"auto": True, "fixed": False, "none": False}


# ------------------------------------------------------------------------------------------- warm-up under teacher control
@pytest.mark.parametrize("warmup", ["include", "exclude"])
def test_teacher_controlled_minibatches_and_the_warmup_rows(warmup):
    buf = ReplayBuffer(100, OBS, ACT)
    for i in range(100):
        buf.add(torch.zeros(OBS).numpy(), torch.zeros(ACT).numpy(), 0.0, torch.zeros(OBS).numpy(), False,
                WARMUP_ACTOR if i < 40 else TEACHER_ACTOR)
    cfg = with_overrides(TrainConfig(k=2), **{"sac.batch_size": 256, "mapping.teacher_warmup": warmup})
    run = SimpleNamespace(cfg=cfg, buffer=buf, gen=torch.Generator().manual_seed(0), device="cpu")
    idx = rule_batch_indices(run, rules.get("teacher"))
    assert idx.shape == (2, 256)
    from_warmup = (buf.actor[idx] == WARMUP_ACTOR).float().mean().item()
    if warmup == "exclude":
        assert from_warmup == 0.0
    else:
        assert 0.25 < from_warmup < 0.55  # 40 % of the rows
    # a student-controlled rule ignores the option: uniform over the buffer
    assert (buf.actor[rule_batch_indices(run, rules.get("on-policy"))] == WARMUP_ACTOR).any()


# ------------------------------------------------------------------------------------------- defaults, CLI, study
def test_defaults_are_the_documented_choices():
    m = RuleMapping()
    assert (m.loss_weight, m.reward_weight, m.env_reward_weight) == (1.0, 1.0, 1.0)
    assert (m.temperature, m.nd_correction, m.td_critic, m.td_plus_r, m.value_gate, m.teacher_warmup) == \
        ("auto", "hx", "learned", "average", "soft", "include")


@pytest.mark.parametrize("key,bad,message", [("temperature", "cold", "valid: auto, fixed, none"),
                                             ("nd_correction", "x", "valid: hx, kl"),
                                             ("loss_weight", -1.0, "finite number >= 0")])
def test_bad_mapping_values_name_the_option(key, bad, message):
    with pytest.raises(ConfigError, match=message):
        resolve(with_overrides(TrainConfig(env="Pendulum-v1", method="sac"), **{f"mapping.{key}": bad}))


def test_the_cli_and_the_study_carry_the_options(tmp_path):
    from typer.testing import CliRunner

    from distlab.cli import app

    result = CliRunner().invoke(app, ["train", "--env", "Hopper-v5", "--method", "piekd", "--k", "1", "--teacher",
                                      str(rs.shipped_teacher("Hopper-v5", "good")), "--rule", "n-distill",
                                      "--mapping-nd-correction", "kl", "--mapping-temperature", "none", "--steps", "40",
                                      "--eval-every", "40", "--eval-episodes", "1", "--set", "sac.warmup_steps=20",
                                      "--set", "sac.batch_size=8", "--set", "sac.width=8", "--out", str(tmp_path / "run"),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    from distlab.io import read_parquet_metadata

    saved = read_parquet_metadata(tmp_path / "run" / "eval.parquet")["config"]["mapping"]
    assert saved["nd_correction"] == "kl" and saved["temperature"] == "none"
    bad = CliRunner().invoke(app, ["train", "--env", "Pendulum-v1", "--method", "sac", "--mapping-value-gate", "fuzzy"])
    assert bad.exit_code == 2 and "valid: soft, hard" in bad.output
    # the study: a cell names only what it changes, and its training config carries it
    from dataclasses import replace

    cell = rs.cells(replace(rs.CONFIGS["smoke"], mapping=(("nd_correction", "kl"), ("loss_weight", 1.0))))[0]
    assert cell["nd_correction"] == "kl" and "loss_weight" not in cell
    assert rs.train_config(cell).mapping.nd_correction == "kl"
    assert "nd_correction" not in rs.cells(rs.CONFIGS["smoke"])[0]
    with pytest.raises(ValueError, match="unknown mapping field"):
        rs.cells(replace(rs.CONFIGS["smoke"], mapping=(("nd_corection", "kl"),)))
