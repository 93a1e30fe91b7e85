"""Distillation inside the ensemble: PIEKD's phase reduces teacher-student KL on held-out states; the
rules' losses are what their docstrings say; non-students do not move; hardcopy copies."""

import pytest
import torch

from distlab import rules
from deep.distill import (PhaseContext, Teacher, check_rule_supported, control_index_sets, distill_phase, hardcopy,
                          piekd_distill_step, policy_loss, rule_distill_step)
from deep.kl import gaussian_kl, squashed_log_prob
from deep.networks import Ensemble
from deep.replay import ReplayBuffer


def _filled_buffer(n, obs_dim=4, act_dim=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    buf = ReplayBuffer(n, obs_dim, act_dim)
    buf.obs.copy_(torch.randn(n, obs_dim, generator=g))
    buf.next_obs.copy_(torch.randn(n, obs_dim, generator=g))
    buf.act.copy_(torch.rand(n, act_dim, generator=g) * 2 - 1)
    buf.rew.copy_(torch.randn(n, generator=g))
    buf.actor.copy_(torch.randint(0, 3, (n,), generator=g))
    buf.size = n
    return buf


def _phase(ens, teacher, rule, buf, students, mode="sampled", n_batches=150, epochs=12, batch_size=64, seed=1):
    """A phase from member ``teacher`` of ``ens`` into ``students`` with PIEKD's step (rule None) or the rule's."""
    gen = torch.Generator().manual_seed(seed)
    rule = None if rule is None else rules.get(rule)
    step = piekd_distill_step if rule is None else rule_distill_step(rule)
    ctx = PhaseContext(ens, students, 1e-3, 0.99, 0.005, gen)
    return distill_phase(ens, Teacher(ens, [teacher] * ens.k, gen), step, buf, control_index_sets(rule, buf, students, teacher),
                         ctx, mode=mode, n_batches=n_batches, epochs=epochs, batch_size=batch_size)


def _kl_to_teacher(ens, teacher, obs):
    with torch.no_grad():
        tm, tl = Teacher(ens, torch.full((ens.k,), teacher), torch.Generator()).policy(obs.expand(ens.k, -1, -1))
        sm, sl = ens.policy(obs.expand(ens.k, -1, -1))
        return gaussian_kl(tm, tl, sm, sl).mean(-1)


@pytest.mark.parametrize("mode", ["sampled", "faithful"])
@pytest.mark.parametrize("rule", [None, "teacher", "on-policy"])
def test_distillation_phase_reduces_kl_on_held_out_states(mode, rule):
    torch.manual_seed(0)
    ens = Ensemble(4, 2, (32, 32, 32))
    buf = _filled_buffer(512)
    held_out = torch.randn(1, 256, 4, generator=torch.Generator().manual_seed(9))
    before = _kl_to_teacher(ens, 1, held_out)
    params_teacher = [t.clone() for t in ens.member_tensors(1).values()]
    _phase(ens, 1, rule, buf, [0, 2], mode=mode)
    after = _kl_to_teacher(ens, 1, held_out)
    assert after[0] < 0.3 * before[0] and after[2] < 0.3 * before[2], (before, after)
    # the teacher itself did not move (weight 0 -> zero gradient -> fresh Adam makes no step)
    for t0, t1 in zip(params_teacher, ens.member_tensors(1).values()):
        assert torch.equal(t0, t1)


def test_piekd_phase_distils_the_critic():
    torch.manual_seed(0)
    ens = Ensemble(4, 2, (32, 32))
    buf = _filled_buffer(256)
    obs, act = buf.obs[None, :128].expand(2, -1, -1), buf.act[None, :128].expand(2, -1, -1)
    gap = lambda: (ens.q(obs, act)[0] - ens.q(obs, act)[1]).square().mean().item()  # noqa: E731
    before = gap()
    _phase(ens, 1, None, buf, [0], n_batches=200)
    assert gap() < 0.1 * before


def test_policy_losses_against_independent_definitions():
    g = torch.Generator().manual_seed(0)
    tm, tl = torch.randn(2, 64, 3, generator=g, dtype=torch.float64), 0.3 * torch.randn(2, 64, 3, generator=g, dtype=torch.float64)
    sm, sl = torch.randn(2, 64, 3, generator=g, dtype=torch.float64), 0.3 * torch.randn(2, 64, 3, generator=g, dtype=torch.float64)
    assert torch.allclose(policy_loss("kl", tm, tl, sm, sl, g), gaussian_kl(tm, tl, sm, sl))
    assert torch.allclose(policy_loss("reverse-kl", tm, tl, sm, sl, g), gaussian_kl(sm, sl, tm, tl))
    # nll-argmax: -log pi_student(tanh(mean_teacher))
    assert torch.allclose(policy_loss("nll-argmax", tm, tl, sm, sl, g), -squashed_log_prob(torch.tanh(tm), sm, sl, eps=1e-12), atol=1e-6)
    # cross-entropies by Monte Carlo: Hx(t||s) - KL(t||s) = H(t) does not depend on the student
    n = 4000
    hx = torch.stack([policy_loss("hx", tm, tl, sm, sl, g) for _ in range(n)]).mean(0)
    hx2 = torch.stack([policy_loss("hx", tm, tl, tm, tl, g) for _ in range(n)]).mean(0)
    assert torch.allclose(hx - hx2, gaussian_kl(tm, tl, sm, sl), atol=0.3)  # MC error ~ 0.05 per entry
    # reverse-hx(s||t) - reverse-hx(s||s) = KL(s||t)
    rhx = torch.stack([policy_loss("reverse-hx", tm, tl, sm, sl, g) for _ in range(n)]).mean(0)
    rhx2 = torch.stack([policy_loss("reverse-hx", sm, sl, sm, sl, g) for _ in range(n)]).mean(0)
    rel = ((rhx - rhx2) - gaussian_kl(sm, sl, tm, tl)).abs() / (1 + gaussian_kl(sm, sl, tm, tl))
    assert rel.mean() < 0.1


def test_every_registered_rule_is_supported_and_unknown_components_are_named():
    for name in rules.names():
        check_rule_supported(rules.get(name))

    class Fake:
        name, control, loss, reward, score, gate = "mine", "student", "wasserstein", "none", "return", "none"

    with pytest.raises(ValueError, match="loss='wasserstein'"):
        check_rule_supported(Fake())


def test_hardcopy_copies_networks_and_optimizer_moments():
    torch.manual_seed(0)
    ens = Ensemble(4, 2, (16, 16, 16))
    opt = torch.optim.Adam(ens.actor_parameters(), lr=1e-3)
    ens.policy(torch.randn(3, 8, 4))[0].sum().backward()
    opt.step()
    hardcopy(ens, {"actor": opt, "alpha": torch.optim.Adam([ens.log_alpha])}, teacher=2, students=[0])
    t, s, other = ens.member_tensors(2), ens.member_tensors(0), ens.member_tensors(1)
    for name in t:
        assert torch.equal(t[name], s[name])
    assert not torch.equal(t["actor.layers.0.weight"], other["actor.layers.0.weight"])
    w = ens.groups[0].actor.layers[0].weight
    assert torch.equal(opt.state[w]["exp_avg"][0], opt.state[w]["exp_avg"][2])
