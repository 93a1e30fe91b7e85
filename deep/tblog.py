"""TensorBoard scalars of a deep run, with CleanRL's tag names, when the ``distlab[tb]`` extra is installed.

Why TensorBoard: the parquet tables are written at evaluations only; a researcher watching a run wants its
training returns, losses and speed as they happen, where CleanRL users already look. Why CleanRL's tags:
their dashboards and habits carry over.

Layout in the run directory (``OUT/tb``; one TensorBoard "run" per folder):

    OUT/tb/            charts/SPS (env steps per second), losses/qf_loss, losses/actor_loss, losses/alpha_loss
                       (summed over the members, as the batched update computes them; a frozen-teacher rule's
                       critic and actor losses under the same tags; other losses of a method, e.g. a
                       distillation phase's, as losses/NAME), charts/episodic_return and charts/episodic_length of warm-up
                       and frozen-teacher episodes
    OUT/tb/member_K/   member K's charts/episodic_return, charts/episodic_length, losses/alpha, eval/mean_return
                       and, with a frozen teacher, eval/kl_teacher (KL(teacher || member) on the member's
                       evaluation states) and eval/kl_teacher_on_teacher_states

The step axis is the env step (``global_step`` in CleanRL). Losses are read every ``nan_check_every`` env
steps, where the NaN check already synchronises with the device: logging adds no host sync per step.
Without tensorboard (not importable) :func:`open_log` returns None and nothing is imported or written.
"""

from __future__ import annotations

import importlib
from pathlib import Path

__all__ = ["RunLog", "open_log", "LOSS_TAGS"]

# the update's loss names (``deep.sac.SACLearner.update``; a frozen-teacher rule's update in ``deep.methods``)
# -> CleanRL's tags: a rule's critic and actor losses are its update's, as SAC's are
LOSS_TAGS = {"critic": "losses/qf_loss", "actor": "losses/actor_loss", "alpha": "losses/alpha_loss",
             "rule_critic": "losses/qf_loss", "rule_actor": "losses/actor_loss"}


def _summary_writer():
    """torch's SummaryWriter class, or None when tensorboard is not installed."""
    try:
        importlib.import_module("tensorboard")
        return importlib.import_module("torch.utils.tensorboard").SummaryWriter
    except ImportError:
        return None


class RunLog:
    """The writers of one run directory: the run's own and one per member, opened when first written."""

    def __init__(self, writer_class, directory: Path, purge_step: int | None):
        self._cls, self.directory, self._purge = writer_class, Path(directory), purge_step
        self._writers = {}

    def writer(self, member: int | None = None):
        """The run's writer (``member`` None or negative: warm-up and teacher episodes) or member's."""
        key = None if member is None or member < 0 else int(member)
        if key not in self._writers:
            path = self.directory if key is None else self.directory / f"member_{key}"
            # purge_step: a resumed run first discards what the killed run logged after its checkpoint
            self._writers[key] = self._cls(log_dir=str(path), purge_step=self._purge)
        return self._writers[key]

    def episode(self, row: dict) -> None:
        """One finished training episode (a row of the episode log)."""
        w = self.writer(row["actor"])
        w.add_scalar("charts/episodic_return", row["episode_return"], row["step"])
        w.add_scalar("charts/episodic_length", row["length"], row["step"])

    def speed(self, step: int, env_steps_per_s: float) -> None:
        self.writer().add_scalar("charts/SPS", env_steps_per_s, step)

    def losses(self, step: int, losses: dict[str, float]) -> None:
        for name, value in losses.items():
            self.writer().add_scalar(LOSS_TAGS.get(name, f"losses/{name}"), value, step)

    def alphas(self, step: int, alphas) -> None:
        for member, alpha in enumerate(alphas):
            self.writer(member).add_scalar("losses/alpha", alpha, step)

    def evaluation(self, rows: list[dict]) -> None:
        """The eval-log rows of one evaluation (one per member)."""
        for row in rows:
            w = self.writer(row["member"])
            w.add_scalar("eval/mean_return", row["mean_return"], row["step"])
            if "kl_student_states" in row:
                w.add_scalar("eval/kl_teacher", row["kl_student_states"], row["step"])
                w.add_scalar("eval/kl_teacher_on_teacher_states", row["kl_teacher_states"], row["step"])

    def flush(self) -> None:
        for w in self._writers.values():
            w.flush()

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers = {}


def open_log(directory: str | Path | None, enabled: bool, resume_step: int | None = None) -> RunLog | None:
    """The TensorBoard log of a run writing to ``directory/tb``, or None (no directory, turned off, or
    tensorboard not installed). ``resume_step``: the checkpoint's step of a resumed run."""
    if directory is None or not enabled:
        return None
    writer_class = _summary_writer()
    if writer_class is None:
        return None
    return RunLog(writer_class, Path(directory) / "tb", resume_step)
