"""The simulators of a group's runs stepped in worker processes (``env_workers = N``; ``deep.loop``).

A stack of S runs steps S simulators per loop step; one after another in the training process (the
default, ``env_workers = 0``) that is S times one MuJoCo step, which becomes the bottleneck once the
batched update is cheap (a GPU, tens of members). :class:`EnvWorkers` moves them into N processes, each
owning a contiguous block of the runs' simulators: one loop step sends every worker its block's actions
first and then collects the results, so the blocks step in parallel.

Same numbers: each worker's simulator is put into its run's exact state (``deep.envs.env_state``: the
whole ``MjData``, the env's RNG, the time-limit counter, as a resumed run is) and steps the same actions,
so the transitions, episodes and tables are those of in-process stepping bit for bit
(``tests/deep/test_env_workers.py``). Resets, checkpoints and restores go to the run's worker.

Why not ``gymnasium.vector.AsyncVectorEnv``: it runs one process per simulator (S = 72 processes for a
study group), and its reset goes to every sub-env (a ``reset_mask`` still sends a no-op to each), while
the loop resets one run at a time with that run's own seed as its episode ends. A block per worker and
per-run messages keep a reset one round trip to one worker.

Workers ignore SIGINT/SIGTERM (the training process stops the run at a safe point and then needs the
simulators' states for its checkpoint) and die with the training process (``distlab.runner``'s
parent-death signal).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal

import numpy as np

__all__ = ["EnvWorkers", "WorkerEnv", "worker_blocks"]


def worker_blocks(runs: int, workers: int) -> list[range]:
    """``runs`` simulators split into ``min(workers, runs)`` contiguous blocks of near-equal size."""
    if workers < 1:
        raise ValueError(f"env workers must be >= 1; got {workers}")
    n = min(workers, runs)
    bounds = np.linspace(0, runs, n + 1).round().astype(int)
    return [range(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def _serve(conn, env_id: str, states: list[dict], parent: int) -> None:
    """A worker: its block's simulators, put into ``states``; answers step/reset/state/restore/close."""
    from distlab.runner import _exit_with_parent

    from deep.envs import env_state, make_env, restore_env_state

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # the training process decides when the run stops
    _exit_with_parent(parent)
    envs = [make_env(env_id) for _ in states]
    for env, state in zip(envs, states):
        restore_env_state(env, state)
    one_simulator = {"reset": lambda env, seed: env.reset(seed=seed), "state": lambda env, _: env_state(env),
                     "restore": restore_env_state}
    conn.send(("ready", None))
    while True:
        command, data = conn.recv()
        try:
            if command == "step":
                answer = [env.step(action) for env, action in zip(envs, data)]
            elif command in one_simulator:  # data: (the simulator's index in the block, the argument)
                i, arg = data
                answer = one_simulator[command](envs[i], arg)
            elif command == "close":
                for env in envs:
                    env.close()
                conn.send(("ok", None))
                return
            else:
                raise ValueError(f"unknown command {command!r}")
        except Exception as err:  # noqa: BLE001 - sent to the training process, which raises it there
            conn.send(("error", err))
            continue
        conn.send(("ok", answer))


class EnvWorkers:
    """``len(states)`` simulators of ``env_id`` in ``workers`` processes (:func:`worker_blocks`), started in
    the given states (``deep.envs.env_state`` of each run's env). ``envs()`` gives one :class:`WorkerEnv`
    per run for the loop's per-run calls; :meth:`step` steps them all, the blocks in parallel."""

    def __init__(self, env_id: str, states: list[dict], workers: int, spaces):
        ctx = mp.get_context("spawn")  # no fork of a process holding torch's threads
        self.blocks = worker_blocks(len(states), workers)
        self.conns, self.procs = [], []
        self.spaces = spaces  # (observation_space, action_space) of one simulator
        for block in self.blocks:
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child_end, env_id, [states[i] for i in block], os.getpid()),
                               daemon=True, name=f"distlab-env-{block.start}")
            proc.start()
            child_end.close()
            self.conns.append(parent_end)
            self.procs.append(proc)
        self.where = [(w, i - block.start) for w, block in enumerate(self.blocks) for i in block]
        self.closed = False
        try:
            for w in range(len(self.conns)):
                self._answer(w)
        except BaseException:
            self.close()
            raise

    def _dead(self, worker: int) -> RuntimeError:
        block, proc = self.blocks[worker], self.procs[worker]
        proc.join(timeout=1)
        return RuntimeError(f"env worker {worker} (the simulators of runs {block.start}..{block.stop - 1}) died with "
                            f"exit code {proc.exitcode}; its error is in the output above")

    def _send(self, worker: int, message) -> None:
        try:
            self.conns[worker].send(message)
        except OSError:  # a broken pipe: the worker is gone
            raise self._dead(worker) from None

    def _answer(self, worker: int):
        """Worker ``worker``'s answer; a RuntimeError instead of waiting forever if it has died (checked once a
        second while no answer is there: an answer that is ready returns at once)."""
        conn, proc = self.conns[worker], self.procs[worker]
        while not conn.poll(1.0):
            if not proc.is_alive():
                raise self._dead(worker)
        status, value = conn.recv()
        if status == "error":
            raise value
        return value

    def _ask(self, run: int, command: str, arg=None):
        """``command`` on run ``run``'s simulator alone, in its worker."""
        worker, local = self.where[run]
        self._send(worker, (command, (local, arg)))
        return self._answer(worker)

    def step(self, actions: list) -> list[tuple]:
        """Every simulator's ``env.step`` with its (env-space) action; the tuples in run order."""
        for w, block in enumerate(self.blocks):
            self._send(w, ("step", [actions[i] for i in block]))
        return [result for w in range(len(self.conns)) for result in self._answer(w)]

    def reset(self, run: int, seed) -> tuple:
        return self._ask(run, "reset", seed)

    def state(self, run: int) -> dict | None:
        return self._ask(run, "state")

    def restore(self, run: int, state: dict) -> None:
        self._ask(run, "restore", state)

    def envs(self) -> list[WorkerEnv]:
        return [WorkerEnv(self, i) for i in range(len(self.where))]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for conn, proc in zip(self.conns, self.procs):
            try:
                if proc.is_alive():
                    conn.send(("close", None))
                    if conn.poll(5):
                        conn.recv()
            except (OSError, EOFError):
                pass  # a worker that is gone has nothing left to close
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()


class WorkerEnv:
    """One run's simulator inside :class:`EnvWorkers`, with the calls the loop makes of a run's env
    (``reset``, spaces, ``close``; ``deep.envs.env_state`` / ``restore_env_state`` ask the worker)."""

    def __init__(self, workers: EnvWorkers, run: int):
        self.workers, self.run = workers, run
        self.observation_space, self.action_space = workers.spaces

    def reset(self, *, seed=None, options=None):
        if options is not None:
            raise ValueError("a worker's simulator takes no reset options")
        return self.workers.reset(self.run, seed)

    def step(self, action):
        raise RuntimeError(f"run {self.run}'s simulator steps with the others (EnvWorkers.step), not alone")

    def worker_state(self) -> dict | None:
        return self.workers.state(self.run)

    def worker_restore(self, state: dict) -> None:
        self.workers.restore(self.run, state)

    def close(self) -> None:
        self.workers.close()
