"""Rules as data on the member axis: a stacked group of mujoco-rules cells equals its cells run alone.

A group is one env's cells (rule x teacher quality x seed) trained as ONE stacked process
(``deep.rules_study.run_group`` -> ``deep.seeds.train_stack``): one batched every-step update in which each
member follows its own rule from its own frozen teacher (``deep.distill.MemberRules``). The reference is
independent of the stacking: each cell run alone (``deep.train.train``, today's single run) from the same
seed. Equality holds up to float rounding of the batched kernels (eval tables, final parameters and Adam
moments), and a member whose rule has no critic step keeps its critic, target critic and their Adam moments
bit-identical to their initial values (and its temperature, where its rule does not step it).
"""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

import deep.rules_study as rs
from deep.checkpoint import load_checkpoint
from deep.config import ConfigError
from deep.distill import MemberRules, restricted
from deep.methods import every_step_rules
from deep.networks import Ensemble
from deep.rng import SeedGenerators
from deep.seeds import check_stack_configs, train_stack
from deep.train import train
from distlab import rules

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# every rule of the study, in three groups (each with both teacher qualities); a group mixes critic-less
# rules (teacher, on-policy, td-teacher-v on the teacher's critic is elsewhere) with critic-stepping ones
GROUPS = [("teacher", "on-policy", "entropy-regularised", "n-distill"),
          ("expected-entropy", "on-policy+r", "n-distill+r", "expected-entropy+r"),
          ("value-gated+r", "teacher-v-reward", "td-teacher-v", "rl")]
SMALL = replace(rs.CONFIGS["smoke"], steps=200, record_every=100, warmup_steps=100, eval_episodes=1, width=16, batch_size=16,
                teachers=rs.QUALITIES)


def _configs(cells, root):
    return [replace(rs.train_config(c), out=str(root / f"{c['rule']}_{c['teacher']}_{c['seed']}"), tensorboard=False)
            for c in cells]


def _initial_ensemble(cfg, obs_dim, act_dim):
    """The student a run of ``cfg`` starts from (``deep.state.new_state``'s order: seeded, then built)."""
    torch.manual_seed(cfg.seed)
    s = cfg.sac
    return Ensemble(obs_dim, act_dim, (s.width,), s.hidden_layers, s.init_alpha, s.log_std_min, s.log_std_max).state_dict()


@pytest.mark.parametrize("group, seeds", [(GROUPS[0], (0,)), (GROUPS[1], (1,)), (GROUPS[2], (0,))])
def test_a_stacked_group_equals_its_cells_run_alone(tmp_path, group, seeds):
    cells = rs.cells(replace(SMALL, rules=group, seeds=seeds))
    stacked_cfgs, alone_cfgs = _configs(cells, tmp_path / "stack"), _configs(cells, tmp_path / "alone")
    stacked = train_stack(stacked_cfgs)
    worst = {}
    for cell, cfg_s, cfg_a, tables in zip(cells, stacked_cfgs, alone_cfgs, stacked):
        alone = train(cfg_a)
        a, b = tables["eval"], alone["eval"]
        assert a[["step", "member", "env_steps", "episodes"]].equals(b[["step", "member", "env_steps", "episodes"]])
        for col in ("mean_return", "kl_student_states", "kl_teacher_states", "teacher_return"):
            np.testing.assert_allclose(a[col], b[col], rtol=1e-4, atol=1e-4, err_msg=f"{cell['rule']} {cell['teacher']}: {col}")
            worst[col] = max(worst.get(col, 0.0), float(np.max(np.abs(a[col].to_numpy() - b[col].to_numpy()))))
        # the episode log: same episodes (lengths, terminations), returns up to rounding
        ea, eb = tables["episodes"], alone["episodes"]
        assert ea[["step", "episode", "actor", "length", "terminated"]].equals(eb[["step", "episode", "actor", "length", "terminated"]])
        sa, sb = load_checkpoint(cfg_s.out, "cpu"), load_checkpoint(cfg_a.out, "cpu")
        for key in sb["ensemble"]:
            torch.testing.assert_close(sa["ensemble"][key], sb["ensemble"][key], rtol=1e-4, atol=1e-5, msg=f"{cell['rule']}: {key}")
            worst["parameters"] = max(worst.get("parameters", 0.0), float((sa["ensemble"][key] - sb["ensemble"][key]).abs().max()))
        for name, opt in sb["optimizers"].items():
            for i, state in opt["state"].items():
                for key, value in state.items():
                    torch.testing.assert_close(sa["optimizers"][name]["state"][i][key], value, rtol=1e-3, atol=1e-6)
    print(f"max |stacked - alone| over {len(cells)} cells: {worst}")


@pytest.mark.parametrize("rule", ["teacher", "on-policy"])
def test_a_member_without_a_critic_step_keeps_its_critic_targets_and_moments(tmp_path, rule):
    """In a group with critic-stepping rules (whose critic Adam steps the stacked tensors), the critic, target
    critic and critic Adam moments of a rule that never reads a critic stay bit-identical to their initial
    values (moments: 0, as an Adam that never stepped), and so do its temperature and its Adam moments."""
    cells = rs.cells(replace(SMALL, rules=(rule, "on-policy+r", "value-gated+r"), teachers=("good",), seeds=(2,)))
    cfgs = _configs(cells, tmp_path)
    train_stack(cfgs)
    state = load_checkpoint(cfgs[0].out, "cpu")
    init = _initial_ensemble(cfgs[0], state["obs_dim"], state["act_dim"])
    for key, value in state["ensemble"].items():
        if "critic" in key or key == "log_alpha":
            assert torch.equal(value, init[key]), key
    moving = load_checkpoint(cfgs[1].out, "cpu")["ensemble"]
    assert not torch.equal(moving["groups.0.critic.layers.0.weight"], init["groups.0.critic.layers.0.weight"])
    for name in ("critic", "alpha"):
        stepped = state["optimizers"][name]["state"]
        assert stepped, f"the stack's {name} Adam stepped (other members' rules use it)"
        for per_param in stepped.values():
            for key in ("exp_avg", "exp_avg_sq"):
                assert torch.count_nonzero(per_param[key]) == 0, (name, key)


def test_member_rules_come_from_the_registry_and_the_mapping():
    from deep.config import RuleMapping

    table = MemberRules([rules.get("teacher"), rules.get("n-distill+r"), rules.get("td-teacher-v+r"), rules.get("value-gated")],
                        [RuleMapping(), RuleMapping(nd_correction="kl", reward_weight=0.5), RuleMapping(),
                         RuleMapping(value_gate="hard", temperature="none")],
                        [False, False, False, True])
    assert table.critic == (None, "rule", "rule", "sac")
    assert table.actor == ("none", "student", "student", "none")
    assert table.boot == ("zero", "student", "teacher+student", "student")
    assert table.reward == ("none", "neg-next-loss:kl", "none", "none")
    assert table.c_env == (0.0, 1.0, 1.0, 1.0)
    assert table.reward_weight[1] == 0.5
    assert table.gate == ("none", "none", "none", "value") and table.soft_gate == (True, True, True, False)
    assert table.alpha_step == (False, True, True, False)
    assert table.coefficient((1.0, 1.0), "cpu") == 1.0  # one rule: the single rule's Python number
    assert torch.equal(table.coefficient((1.0, 0.5), "cpu"), torch.tensor([[1.0], [0.5]]))


def test_one_rule_per_run_and_one_generator_per_run():
    gens = SeedGenerators([torch.Generator().manual_seed(s) for s in range(2)])
    assert restricted(gens, [True, True, False, False]).active == (True, False)
    with pytest.raises(ValueError, match="stacked run 0 follow different rules"):
        restricted(gens, [True, False, False, False])
    with pytest.raises(ValueError, match="one generator per run"):
        restricted(torch.Generator(), [True, False])


def test_a_single_run_uses_the_one_rule_table():
    from types import SimpleNamespace

    cell = rs.cells(rs.CONFIGS["smoke"])[0]
    cfg = rs.train_config(dict(cell, rule="value-gated"))
    table = every_step_rules(SimpleNamespace(cfg=replace(cfg, k=2)))
    assert table.uniform_rule and table.critic == ("sac", "sac")


def test_stacks_refuse_runs_that_differ_in_a_shared_setting():
    from deep.methods import resolve

    cells = rs.cells(replace(SMALL, rules=("teacher", "rl"), teachers=("good",)))
    a, b = (resolve(rs.train_config(c)) for c in cells)
    check_stack_configs([a, b])  # rule differs: fine
    with pytest.raises(ConfigError, match="must share 'steps'.*only seed, out, rule, teacher, mapping may differ"):
        check_stack_configs([a, replace(b, steps=400)])
    with pytest.raises(ConfigError, match="distinct run directories"):
        check_stack_configs([replace(a, out="x"), replace(b, out="x")])


def test_the_stacked_study_writes_the_cells_of_the_unstacked_one(tmp_path):
    """``distlab study mujoco-rules --stack``: one task per env group, each cell written under the same name
    (cell hash) with the same columns as cell by cell, and the same numbers up to float rounding."""
    from distlab import studies
    from distlab.runner import cell_path

    config = replace(SMALL, rules=("teacher", "n-distill+r"), teachers=("good",), seeds=(3,))
    by_cell = studies.run_study("mujoco-rules", "smoke", tmp_path / "cells", workers=1, progress=False, config=config)
    stacked = studies.run_study("mujoco-rules", "smoke", tmp_path / "stack", workers=1, progress=False, config=config, stack=True)
    for cell in rs.cells(config):
        assert cell_path(tmp_path / "stack" / "smoke", "mujoco-rules", cell).exists()
    assert list(stacked.columns) == list(by_cell.columns)
    exact = [c for c in by_cell.columns if c not in ("mean_return", "std_return", "kl_student_states", "kl_teacher_states", "wall_time_s")]
    pd.testing.assert_frame_equal(stacked[exact], by_cell[exact])
    for col in ("mean_return", "kl_student_states", "kl_teacher_states"):
        np.testing.assert_allclose(stacked[col], by_cell[col], rtol=1e-4, atol=1e-4)


def test_stack_and_device_are_options_of_the_studies_that_have_them():
    from distlab import studies

    with pytest.raises(ValueError, match="study 'chain' has no stack option; studies with one: mujoco-rules"):
        studies.run_study("chain", "smoke", "unused", stack=True)
    with pytest.raises(ValueError, match="unknown device 'tpu'; valid: cpu, cuda, cuda:N"):
        rs.cells(replace(SMALL, device="tpu"))
    assert "device" not in rs.cells(SMALL)[0]  # cpu cells keep their names
    assert rs.cells(replace(SMALL, device="cuda:1"))[0]["device"] == "cuda:1"
    assert rs.gpu_share(SMALL) == 0.0 and rs.gpu_share(replace(SMALL, device="cuda")) == 0.5
    cells = rs.cells(replace(SMALL, envs=("Hopper-v5",), rules=("teacher", "rl"), seeds=(0, 1)))
    assert len({rs.group_of(c) for c in cells}) == 1  # one env: one group


def test_a_killed_stacked_group_resumes_to_the_uninterrupted_one(tmp_path):
    """Each cell of a group checkpoints in its own run directory (a single run's layout); the group resumed
    from them continues every cell exactly (same device, threads and libraries: bit-identical tables)."""
    cells = rs.cells(replace(SMALL, rules=("teacher", "n-distill+r"), teachers=rs.QUALITIES, seeds=(0,)))[1:3]

    def configs(root):
        return [replace(c, checkpoint_every=100) for c in _configs(cells, root)]

    whole = train_stack(configs(tmp_path / "whole"))
    from deep.train import _Killed

    with pytest.raises(_Killed):
        train_stack(configs(tmp_path / "killed"), stop_at=150)
    resumed = train_stack(configs(tmp_path / "killed"), resume=True)
    for a, b in zip(whole, resumed):
        cols = [c for c in a["eval"].columns if c != "wall_time_s"]
        pd.testing.assert_frame_equal(a["eval"][cols], b["eval"][cols])


def test_stacked_seeds_take_a_frozen_teacher_on_the_every_step_schedule(tmp_path):
    """``distlab train --seeds`` with a frozen --teacher and a --rule (every-step): each seed equals its single run."""
    from deep.seeds import train_seeds

    cell = rs.cells(replace(SMALL, rules=("value-gated+r",), teachers=("good",)))[0]
    cfg = replace(rs.train_config(cell), out=str(tmp_path / "stack"), tensorboard=False)
    stacked = train_seeds(cfg, [0, 1])
    alone = train(replace(cfg, seed=1, out=str(tmp_path / "alone")))
    np.testing.assert_allclose(stacked[1]["eval"]["mean_return"], alone["eval"]["mean_return"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stacked[1]["eval"]["kl_student_states"], alone["eval"]["kl_student_states"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rule", ["teacher", "n-distill+r"])
def test_a_stack_of_one_cell_is_its_single_run_bit_for_bit(rule):
    """A stack of one run (deep.seeds.StackedRuns) gives the single run's (deep.train) eval table exactly: the
    step towards one loop for single runs, stacked seeds and stacked cells."""
    cfg = rs.train_config(rs.cells(replace(SMALL, rules=(rule,), teachers=("imperfect",)))[0])
    stacked, alone = train_stack([cfg])[0]["eval"], train(cfg)["eval"]
    cols = [c for c in alone.columns if c != "wall_time_s"]
    pd.testing.assert_frame_equal(stacked[cols], alone[cols], check_exact=True)


def test_one_loop_serves_a_single_run_stacked_seeds_and_stacked_cells(tmp_path, monkeypatch):
    """``deep.loop.run_loop`` steps the envs of all three (no second copy of the loop): a single run steps one
    env per loop step, stacked seeds and stacked cells step every run's env in the same call."""
    import deep.loop
    from deep.seeds import train_seeds

    calls = []
    original = deep.loop.step_envs
    monkeypatch.setattr(deep.loop, "step_envs", lambda runs, actions, *rest: calls.append(len(runs)) or original(runs, actions, *rest))
    cfg = replace(rs.train_config(rs.cells(replace(SMALL, rules=("on-policy",), steps=120))[0]), tensorboard=False)
    train(replace(cfg, out=None))
    assert calls == [1] * 120
    calls.clear()
    train_seeds(replace(cfg, out=str(tmp_path / "seeds")), [0, 1])
    assert calls == [2] * 120
    calls.clear()
    train_stack([replace(cfg, out=None), replace(cfg, rule="teacher", out=None), replace(cfg, seed=1, out=None)])
    assert calls == [3] * 120


def test_a_killed_study_group_resumes_from_its_work_dirs(tmp_path, monkeypatch):
    """``run_group`` checkpoints each cell in the runner's work dir (``distlab.runner.work_dir``) every
    GROUP_CHECKPOINT_EVERY env steps; rerun after a kill, it resumes them and gives the uninterrupted tables."""
    import deep.seeds
    from deep.train import _Killed

    monkeypatch.setattr(rs, "GROUP_CHECKPOINT_EVERY", 100)
    cells = rs.cells(replace(SMALL, rules=("teacher", "n-distill+r"), teachers=("good",), seeds=(0,)))
    whole = rs.run_group(cells, [tmp_path / "whole" / f"{i}.run" for i in range(len(cells))])
    dirs = [tmp_path / "killed" / f"{i}.run" for i in range(len(cells))]
    original, calls = deep.seeds.train_stack, []

    def killed_at_150(configs, **kw):
        return original(configs, stop_at=150, **kw)

    monkeypatch.setattr(deep.seeds, "train_stack", killed_at_150)
    with pytest.raises(_Killed):
        rs.run_group(cells, dirs)
    assert all((d / "checkpoint.pt").exists() for d in dirs)  # the checkpoint at step 100
    monkeypatch.setattr(deep.seeds, "train_stack", lambda configs, **kw: calls.append(kw) or original(configs, **kw))
    resumed = rs.run_group(cells, dirs)
    assert calls == [dict(resume=True, overwrite=False)]
    for a, b in zip(whole, resumed):
        pd.testing.assert_frame_equal(a.drop(columns="wall_time_s"), b.drop(columns="wall_time_s"), check_exact=True)
