"""PIEKD / DPD fidelity: a phase leaves the teacher bit-identical (targets and optimizer state included) and
soft-updates the students' targets once; faithful mode shuffles whole blocks and drops the partial one;
the teacher runs alone; DPD's peers distil on the states their peer collected."""

from types import SimpleNamespace

import pytest
import torch

from distlab import rules
from deep.config import SACConfig, TrainConfig
from deep.distill import (PhaseContext, Teacher, _phase_batches, control_index_sets, distill_phase, piekd_distill_step,
                          rule_distill_step)
from deep.methods import dpd_state_indices
from deep.networks import Ensemble
from deep.replay import ReplayBuffer
from deep.sac import SACLearner


def _filled_buffer(n, obs_dim=4, act_dim=2, seed=0, actors=3):
    g = torch.Generator().manual_seed(seed)
    buf = ReplayBuffer(n, obs_dim, act_dim)
    for i in range(n):
        buf.add(torch.randn(obs_dim, generator=g).numpy(), (torch.rand(act_dim, generator=g) * 2 - 1).numpy(),
                float(torch.randn(1, generator=g)), torch.randn(obs_dim, generator=g).numpy(), False, (i // 50) % actors)
    return buf


def _member_snapshot(ens, learner, member):
    """Every tensor of ``member``: networks, target critics, log_alpha and its slices of the SAC Adam state."""
    snap = {name: t.clone() for name, t in ens.member_tensors(member).items()}
    gi, row = ens.locate(member)
    g = ens.groups[gi]
    for opt_name, opt in learner.optimizers().items():
        for i, p in enumerate(p for group in opt.param_groups for p in group["params"]):
            for key, val in opt.state.get(p, {}).items():
                if torch.is_tensor(val) and val.dim() > 0:
                    rows = slice(member, member + 1) if p is ens.log_alpha else (
                        slice(row, row + 1) if any(p is q for q in g.actor.parameters()) else slice(2 * row, 2 * row + 2))
                    snap[f"{opt_name}.{i}.{key}"] = val[rows].clone()
    return snap


@pytest.mark.parametrize("rule", [None, "n-distill+r", "teacher-v-reward"])
def test_a_phase_leaves_the_teacher_bit_identical_and_soft_updates_the_students_targets_once(rule):
    torch.manual_seed(0)
    ens = Ensemble(4, 2, (16, 16, 16))
    buf = _filled_buffer(300)
    gen = torch.Generator().manual_seed(1)
    learner = SACLearner(ens, SACConfig(batch_size=32), gen)
    for _ in range(3):  # Adam state exists, online and target critics differ
        learner.update(buf.sample(3, 32, gen))
    teacher, students, tau = 1, [0, 2], 0.005
    before = _member_snapshot(ens, learner, teacher)
    targets = {m: {k: v.clone() for k, v in ens.member_tensors(m).items() if k.startswith("target_critic")} for m in students}
    rule_obj = None if rule is None else rules.get(rule)
    ctx = PhaseContext(ens, students, 1e-3, 0.99, tau, gen)
    step = piekd_distill_step if rule is None else rule_distill_step(rule_obj)
    n = distill_phase(ens, Teacher(ens, [teacher] * 3, gen), step, buf, control_index_sets(rule_obj, buf, students, teacher),
                      ctx, mode="sampled", n_batches=20, epochs=1, batch_size=32)
    assert len(n) == 20
    after = _member_snapshot(ens, learner, teacher)
    assert before.keys() == after.keys() and any(k.startswith("target_critic") for k in before)
    for name in before:
        assert torch.equal(before[name], after[name]), name
    if rule is None:  # PIEKD's step: no bootstrap; one soft update of the students' targets after the phase
        for m in students:
            now = ens.member_tensors(m)
            for name, old in targets[m].items():
                online = now[name.replace("target_critic", "critic")]
                assert torch.allclose(now[name], torch.lerp(old, online, tau), atol=1e-7), name
    else:  # the rule bootstraps from the students' targets: they moved
        assert all(not torch.equal(ens.member_tensors(m)[name], old) for m in students for name, old in targets[m].items()
                   if name.endswith("weight"))


def test_faithful_mode_shuffles_whole_blocks_each_epoch_and_drops_the_partial_block():
    size, batch = 10 * 64 + 30, 64
    rows = torch.arange(size) * 3  # the student's index set (values differ from positions)
    gen = torch.Generator().manual_seed(0)
    batches = list(_phase_batches({0: rows}, 1, "faithful", 0, 3, batch, gen))
    assert len(batches) == 3 * 10  # public code: starts range(0, n - B, B): 10 full blocks, the last 30 dropped
    orders = []
    for epoch in range(3):
        starts = []
        for idx in batches[10 * epoch:10 * (epoch + 1)]:
            positions = idx[0] // 3
            assert torch.equal(positions, positions[0] + torch.arange(batch))  # contiguous block
            starts.append(int(positions[0]))
        assert sorted(starts) == list(range(0, 640, 64))  # every full block once per epoch, nothing beyond 640
        orders.append(starts)
    assert orders[0] != orders[1] or orders[1] != orders[2]  # reshuffled (3 equal orders: chance 1/10!^2)


@pytest.mark.parametrize("teacher_of", [[1, 1, 1], [1, 2, 0], [2, 0, 0]])
def test_teacher_forward_runs_only_the_teaching_members_and_equals_the_full_ensemble(teacher_of):
    torch.manual_seed(0)
    ens = Ensemble(5, 3, (16, 32, 16))  # two width groups
    obs, act = torch.randn(3, 40, 5), torch.rand(3, 40, 3) * 2 - 1
    t = Teacher(ens, teacher_of, torch.Generator())
    assert (t.single is not None) == (len(set(teacher_of)) == 1) and t.permutation == (sorted(teacher_of) == [0, 1, 2])
    mean, log_std = ens.policy(obs.reshape(1, -1, 5).expand(3, -1, -1))  # every member on every state: the reference
    q = ens.q(obs.reshape(1, -1, 5).expand(3, -1, -1), act.reshape(1, -1, 3).expand(3, -1, -1))
    for k, m in enumerate(teacher_of):
        rows = slice(40 * k, 40 * (k + 1))
        assert torch.allclose(t.policy(obs)[0][k], mean[m, rows], atol=1e-6)
        assert torch.allclose(t.policy(obs)[1][k], log_std[m, rows], atol=1e-6)
        assert torch.allclose(t.q(obs, act)[k], q[m, :, rows], atol=1e-5)


def _dpd_run(buf, states, recent=100, batch=500):
    cfg = TrainConfig(method="dpd", k=2, dpd_states=states, dpd_recent=recent, dpd_batch=batch)
    return SimpleNamespace(cfg=cfg, buffer=buf, device=torch.device("cpu"), gen=torch.Generator().manual_seed(0))


def test_dpd_peers_distil_on_the_states_their_peer_collected():
    buf = _filled_buffer(600, actors=2)  # members alternate every 50 transitions: 0, 1, 0, 1, ...
    actor = buf.actor[: buf.size]
    idx = dpd_state_indices(_dpd_run(buf, "peer"))
    for k in (0, 1):
        peer = 1 - k
        assert (actor[idx[k]] == peer).all()
        newest_of_peer = torch.nonzero(actor == peer).flatten()[-100:]  # the peer's last dpd_recent transitions
        assert set(idx[k].tolist()) <= set(newest_of_peer.tolist())
        assert len(set(idx[k].tolist())) > 90  # 500 draws cover almost all of the 100
    recent = dpd_state_indices(_dpd_run(buf, "recent"))
    last = set(range(500, 600))
    assert set(recent[0].tolist()) <= last and set(recent[1].tolist()) <= last  # both peers: the shared last 100
    assert (actor[recent[0]] == 0).any()  # peer 0 partly distils on its own states: what peer sampling avoids


def test_dpd_falls_back_to_recent_states_while_the_peer_has_none():
    buf = _filled_buffer(200, actors=1)  # only member 0 has acted
    idx = dpd_state_indices(_dpd_run(buf, "peer", batch=50))
    assert set(idx[0].tolist()) <= set(range(100, 200))  # peer 1 has no transitions: the last 100 of anyone
    assert (buf.actor[idx[1]] == 0).all()
