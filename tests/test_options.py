"""UpdateOptions: one validated options object; keywords (old spellings included) map onto it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import mdps
from distlab import exact
from distlab.options import DATA, OPTION_NAMES, SPELLINGS, UpdateOptions, resolve, split_keywords
from distlab.teachers import softmax_policy


def test_public_option_names_are_spelled_as_documented():
    for name in ("step_unit", "transitions_per_step", "baseline", "baseline_lr", "max_steps", "dpd_clip", "dpd_states",
                 "dpd_weight", "dpd_alpha", "loss", "control", "exploration", "teacher_temperature"):
        assert name in OPTION_NAMES, name
    assert set(SPELLINGS.values()) <= set(DATA)


def test_options_are_frozen_and_hashable():
    options = UpdateOptions(baseline="exact")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.baseline = "none"
    assert hash(options) == hash(UpdateOptions(baseline="exact"))
    assert options.replace(baseline="learned").baseline == "learned"
    with pytest.raises(TypeError, match="unknown option"):
        options.replace(baselin="none")


@pytest.mark.parametrize("kwargs, match", [
    (dict(step_unit="steps"), "unknown step_unit 'steps'; valid: episode, transitions"),
    (dict(step_unit="transitions"), "needs transitions_per_step"),
    (dict(step_unit="transitions", transitions_per_step=0), "needs transitions_per_step"),
    (dict(transitions_per_step=100), "is for step_unit='transitions'"),
    (dict(baseline="critic"), "unknown baseline 'critic'; valid: none, exact, learned"),
    (dict(baseline_lr=0.0), "baseline_lr must be in"),
    (dict(max_steps=0), "max_steps must be an integer >= 1"),
    (dict(max_steps=2.5), "max_steps must be an integer >= 1"),
    (dict(dpd_clip=0.0), "dpd_clip must be a finite number > 0, or None"),
    (dict(dpd_clip=float("inf")), "dpd_clip must be a finite number > 0, or None"),
    (dict(dpd_states="both"), "unknown dpd_states 'both'; valid: own, peer"),
    (dict(dpd_weight="softmax"), "unknown dpd_weight 'softmax'; valid: exp, indicator"),
    (dict(loss="l2"), "unknown loss 'l2'"),
    (dict(beta=2.0), "beta"),
])
def test_bad_options_name_the_value_and_the_choices(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UpdateOptions(**kwargs)


def test_split_keywords_maps_old_spellings_and_rejects_unknown_ones():
    options, data = split_keywords("f", None, dict(teacher_values=1, peers=2, loss_masks=3, peer_values=4, beta=0.2))
    assert data == dict(teacher_value=1, peer=2, loss_mask=3, peer_value=4)
    assert options == UpdateOptions(beta=0.2)
    with pytest.raises(TypeError, match="given twice"):
        split_keywords("f", None, dict(teacher_values=1, teacher_value=1))
    with pytest.raises(TypeError, match=r"f\(\) got an unknown keyword 'lr'; valid: options loss, .*; data alias"):
        split_keywords("f", None, dict(lr=0.1))
    with pytest.raises(TypeError, match="options must be an UpdateOptions"):
        split_keywords("f", dict(beta=0.2), {})


def test_resolve_swaps_components_and_checks_exploration_against_the_control():
    assert resolve("on-policy", UpdateOptions(loss="kl", control="uniform")).loss == "kl"
    with pytest.raises(ValueError, match="exploration='greedy' changes the student's behaviour"):
        resolve("teacher", UpdateOptions(exploration="greedy"))


def test_train_sampled_takes_old_and_new_spellings_and_an_options_object_alike():
    from distlab.sampled import train_sampled

    batch = mdps.random_gridworlds(2, size=5, seed=3)
    _, Q, _ = exact.optimal_batch(batch)
    teachers = softmax_policy(Q, 0.3)
    V = exact.evaluate_batch(batch, teachers)[0]
    run = dict(steps=20, lr=0.5, record_every=10, seed=1, return_theta=True)
    _, old = train_sampled(batch, "td-teacher-v", teachers, teacher_values=V, **run)
    _, new = train_sampled(batch, "td-teacher-v", teachers, teacher_value=V, **run)
    _, obj = train_sampled(batch, "td-teacher-v", teachers, UpdateOptions(), teacher_value=V, **run)
    np.testing.assert_array_equal(old, new)
    np.testing.assert_array_equal(old, obj)
    with pytest.raises(TypeError, match="unknown keyword 'student_value'"):
        train_sampled(batch, "value-gated", teachers, student_value=V, **run)
