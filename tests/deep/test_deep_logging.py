"""What a researcher watches during a deep run: the progress bar (one rate: env steps/s) and TensorBoard
scalars under CleanRL's tag names (``deep.tblog``), off cleanly without tensorboard."""

import re
import sys

import pytest

from deep.config import TrainConfig, with_overrides
from deep.seeds import train_seeds
from deep.train import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"env": "Pendulum-v1", "method": "sac", "sac.width": 8, "sac.batch_size": 8, "sac.warmup_steps": 200, "steps": 400,
        "eval_every": 200, "eval_episodes": 1, "progress": False, "nan_check_every": 100}


def tiny(**kw) -> TrainConfig:
    return with_overrides(TrainConfig(), **{**TINY, **kw})


def bar_lines(text: str) -> list[str]:
    return [part for part in re.split(r"[\r\n]", text) if "%|" in part]


@pytest.mark.parametrize("stacked", [False, True], ids=["single", "stacked"])
def test_the_progress_bar_shows_one_rate_env_steps_per_second(stacked, capsys, tmp_path):
    cfg = tiny(progress=True, steps=300, out=str(tmp_path / "run"))
    train_seeds(cfg, [0, 1]) if stacked else train(cfg)
    lines = bar_lines(capsys.readouterr().err)
    assert lines and "300/300" in lines[-1]
    for line in lines:
        assert line.count("/s") <= 1, line  # tqdm's own it/s (or step/s) is gone
    assert re.search(r"\d+ env steps/s", lines[-1]) and "best" in lines[-1], lines[-1]


@pytest.fixture(scope="module")
def pendulum_teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    train(tiny(method="ensemble-sac", k=2, steps=250, eval_every=250, out=str(out)))
    return f"{out}:1"


def scalars(directory) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] of the event files in ``directory`` (tensorboard's own reader)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(directory))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_a_run_writes_cleanrl_tags_per_member_and_the_kl_to_its_frozen_teacher(pendulum_teacher, tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    # periodic schedule: SAC's own update (CleanRL's three losses) and a frozen teacher (the KL columns)
    tables = train(tiny(method="piekd", k=2, rule="on-policy", teacher=pendulum_teacher, schedule="periodic",
                        distill_start=300, distill_interval=100, distill_batches=2, out=str(out)))
    acted = set(tables["episodes"].actor[tables["episodes"].actor >= 0])  # the members that finished an episode
    assert acted
    run = scalars(out / "tb")
    for tag in ("charts/SPS", "losses/qf_loss", "losses/actor_loss", "losses/alpha_loss", "charts/episodic_return"):
        assert tag in run, sorted(run)
    assert [step for step, _ in run["losses/qf_loss"]] == [200, 300, 400]  # every nan_check_every, after warm-up
    assert {step for step, _ in run["charts/episodic_return"]} == {200}  # the warm-up episode
    for member in (0, 1):
        mine = scalars(out / "tb" / f"member_{member}")
        for tag in ("losses/alpha", "eval/mean_return", "eval/kl_teacher"):
            assert tag in mine, (member, sorted(mine))
        assert [step for step, _ in mine["eval/mean_return"]] == [200, 400]
        assert all(value >= 0 for _, value in mine["eval/kl_teacher"])
        assert ("charts/episodic_return" in mine) == (member in acted)
        assert all(length == 200 for _, length in mine.get("charts/episodic_length", []))


def test_without_tensorboard_a_run_works_and_writes_no_tb_folder(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    tables = train(tiny(out=str(tmp_path / "run")))
    assert sorted(tables["eval"].step) == [200, 400]
    assert not (tmp_path / "run" / "tb").exists()


def test_tensorboard_off_by_option(tmp_path):
    train(tiny(tensorboard=False, steps=200, out=str(tmp_path / "run")))
    assert not (tmp_path / "run" / "tb").exists()
