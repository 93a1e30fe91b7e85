"""The rule registry: names, components, validation, user rules."""

import re

import pytest

from distlab import rules

DESIGN_BASES = [
    "teacher", "on-policy", "entropy-regularised", "n-distill", "expected-entropy", "teacher-v-reward",
    "value-gated", "td-teacher-v", "td-v0", "rl", "dpd",
]
NO_PLUS_R = {"teacher", "teacher-v-reward", "rl"}


def test_names_are_exactly_the_design_names():
    expected = set(DESIGN_BASES) | {f"{b}+r" for b in DESIGN_BASES if b not in NO_PLUS_R}
    assert set(rules.names()) == expected
    assert len(rules.names()) == len(expected)
    assert rules.base_names() == DESIGN_BASES


def test_plus_r_variants_add_only_the_environment_reward():
    for name in rules.names():
        if not name.endswith("+r"):
            continue
        base, plus = rules.get(name.removesuffix("+r")), rules.get(name)
        assert plus.env_reward and not base.env_reward
        for field in ("control", "loss", "reward", "score", "gate"):
            assert getattr(plus, field) == getattr(base, field)
        assert plus.is_gradient == base.is_gradient


def test_gradient_flags_match_table_1():
    gradient = {n for n in rules.base_names() if rules.get(n).is_gradient}
    assert gradient == {"teacher", "entropy-regularised", "n-distill", "expected-entropy", "teacher-v-reward", "rl"}


def test_unknown_rule_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"unknown rule 'n-distil'; valid rules: teacher, on-policy, .*n-distill"):
        rules.get("n-distil")


@pytest.mark.parametrize("field, valid", [
    ("control", rules.CONTROLS), ("loss", rules.LOSSES), ("reward", rules.REWARDS), ("score", rules.SCORES), ("gate", rules.GATES),
])
def test_unknown_component_lists_the_valid_ones(field, valid):
    with pytest.raises(ValueError, match=f"unknown {field} 'bogus'.*{re.escape(', '.join(valid))}"):
        rules.Rule("x", **{field: "bogus"})


def test_register_adds_the_plus_r_variant_and_refuses_duplicates(monkeypatch):
    monkeypatch.setattr(rules, "_REGISTRY", dict(rules._REGISTRY))
    rule = rules.Rule("my-rule", loss="reverse-kl", reward="log-teacher", doc="test rule")
    rules.register(rule)
    assert rules.get("my-rule") is rule
    assert rules.get("my-rule+r").env_reward
    with pytest.raises(ValueError, match="already registered"):
        rules.register(rule)
    rules.register(rules.Rule("my-rule", loss="hx"), overwrite=True)
    assert rules.get("my-rule").loss == "hx"


def test_control_and_exploration_components_are_documented():
    doc = rules.__doc__
    for name in rules.CONTROLS + rules.EXPLORATIONS:
        assert f'"{name}"' in doc, name


@pytest.mark.parametrize(
    "option",
    [
        dict(loss="l2"),
        dict(control="expert"),
        dict(exploration="curious"),
        dict(control="teacher", exploration="greedy"),
        dict(beta=1.5),
        dict(epsilon=-0.1),
        dict(temperature=0.0),
        dict(teacher_temperature=-1.0),
        dict(dpd_weight="softmax"),
        dict(dpd_alpha=float("inf")),
    ],
)
def test_exact_and_sampled_backends_reject_bad_options_alike(option):
    """Both backends validate through UpdateOptions (and options.resolve): the same input gets the same message."""
    import numpy as np

    import mdps
    from distlab.expected import expected_update
    from distlab.sampled import sampled_update

    mdp = mdps.garnet(4, 2, 2, seed=0)
    theta, teacher = np.zeros((4, 2)), np.full((4, 2), 0.5)
    with pytest.raises(ValueError) as exact_error:
        expected_update(mdp, "on-policy", theta, teacher, **option)
    with pytest.raises(ValueError) as sampled_error:
        sampled_update(mdp, "on-policy", theta, teacher, episodes=10, seed=0, **option)
    assert str(exact_error.value) == str(sampled_error.value)
    from distlab.options import UpdateOptions, resolve

    assert str(exact_error.value) == str(pytest.raises(ValueError, lambda: resolve("on-policy", UpdateOptions(**option))).value)
