"""Environments: gymnasium MuJoCo v5 and Pendulum-v1, stepped one at a time with explicit resets.

Why single environments and manual resets: gymnasium 1.x vector environments autoreset *on the step after*
an episode ends (the returned observation of that step belongs to the new episode), which makes it easy
to store a wrong transition. Stepping one environment and resetting it ourselves keeps the transition
(s, a, r, s', terminated) exact: ``s'`` is always the true next state.

Termination vs truncation: ``terminated`` (the MDP reached a terminal state, e.g. Hopper fell) stops the
bootstrap, ``y = r``; ``truncated`` (the time limit) does not, ``y = r + gamma V(s')`` (Pardo et al.,
2018). Only ``terminated`` goes into the replay buffer.

Actions: the policy acts in [-1, 1]^|A| (tanh); :func:`to_env_action` maps to the Box bounds.

Checkpoints: :func:`env_state` / :func:`restore_env_state` carry everything the next ``step`` of an
environment depends on, so that a resumed run continues the episode in progress exactly.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SUPPORTED_ENVS", "check_env_id", "make_env", "to_env_action", "env_dims", "evaluate_policies", "env_state",
           "restore_env_state"]

SUPPORTED_ENVS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5", "Swimmer-v5", "Pendulum-v1")


def check_env_id(env_id: str) -> None:
    """ValueError unless ``env_id`` is a registered gymnasium environment with continuous (Box) actions."""
    import gymnasium as gym

    if env_id not in gym.envs.registry:
        raise ValueError(f"unknown env {env_id!r}; supported: {', '.join(SUPPORTED_ENVS)} "
                         "(any registered gymnasium env with Box actions also works)")


def make_env(env_id: str):
    """One gymnasium environment; checks that its actions are continuous and its observations flat."""
    import gymnasium as gym

    check_env_id(env_id)
    env = gym.make(env_id)
    if not isinstance(env.action_space, gym.spaces.Box) or not isinstance(env.observation_space, gym.spaces.Box):
        env.close()
        raise ValueError(f"env {env_id!r} needs Box observations and actions for SAC; got "
                         f"{env.observation_space} and {env.action_space}")
    return env


def env_dims(env) -> tuple[int, int]:
    """(observation size, action size)."""
    return int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))


def _time_limit(env):
    """The TimeLimit wrapper of ``env`` (its elapsed-steps counter decides truncation), or None."""
    from gymnasium.wrappers import TimeLimit

    while env is not None:
        if isinstance(env, TimeLimit):
            return env
        env = getattr(env, "env", None)
    return None


def env_state(env) -> dict | None:
    """Everything the next ``env.step`` depends on (call after a reset), or None for a simulator we cannot save.

    - MuJoCo: the whole ``MjData`` (pickled), not only the integration state of ``mj_getState``: Ant and
      Humanoid read positions derived by the *previous* ``mj_step`` (``xpos``, ``xipos``: stale by one
      substep) before they step, which no integration state (with or without ``mj_forward``) reproduces;
      the integration state is kept too, as the fallback for a pickle another mujoco version cannot read.
    - classic control (Pendulum): its ``state`` (and ``last_u``) attributes.
    - always: the env's ``np_random`` (it draws the next reset's initial state) and the TimeLimit counter.
    """
    import copy
    import pickle

    if hasattr(env, "worker_state"):  # a simulator in a worker process (deep.env_workers)
        return env.worker_state()
    base = env.unwrapped
    state = dict(np_random=base.np_random.bit_generator.state)
    limit = _time_limit(env)
    if limit is not None:
        state["elapsed_steps"] = limit._elapsed_steps
    if hasattr(base, "model") and hasattr(base, "data"):
        import mujoco

        kind = mujoco.mjtState.mjSTATE_INTEGRATION
        integration = np.empty(mujoco.mj_stateSize(base.model, kind))
        mujoco.mj_getState(base.model, base.data, integration, kind)
        state["mujoco"] = dict(data=pickle.dumps(base.data), integration=integration, version=mujoco.__version__)
    elif hasattr(base, "state"):
        # deep copies: a later step must not change what was saved
        state["classic"] = {name: copy.deepcopy(getattr(base, name)) for name in ("state", "last_u") if hasattr(base, name)}
    else:
        return None
    return state


def restore_env_state(env, state: dict) -> None:
    """Put ``env`` (fresh from :func:`make_env`) into the saved ``state`` of :func:`env_state`.

    The env is reset first (the wrappers refuse a step before a reset); then the simulator, the env's RNG and
    the TimeLimit counter are overwritten, so that reset leaves no trace. A MuJoCo pickle this mujoco cannot
    read falls back to the integration state (then Ant and Humanoid differ at the first step, see above).
    """
    import copy
    import pickle

    if hasattr(env, "worker_restore"):  # a simulator in a worker process (deep.env_workers)
        env.worker_restore(state)
        return
    env.reset(seed=0)
    base = env.unwrapped
    if "mujoco" in state:
        import mujoco

        saved = state["mujoco"]
        try:
            mujoco.mj_copyData(base.data, base.model, pickle.loads(saved["data"]))
        except Exception as err:  # noqa: BLE001 - any unreadable pickle: fall back, and say so
            import warnings

            warnings.warn(f"the checkpoint's MuJoCo data (mujoco {saved['version']}) cannot be read here ({type(err).__name__}); "
                          "restored from its integration state: derived quantities are recomputed")
            kind = mujoco.mjtState.mjSTATE_INTEGRATION
            mujoco.mj_setState(base.model, base.data, np.asarray(saved["integration"], np.float64), kind)
            mujoco.mj_forward(base.model, base.data)
    for name, value in state.get("classic", {}).items():
        setattr(base, name, copy.deepcopy(value))
    base.np_random.bit_generator.state = state["np_random"]
    limit = _time_limit(env)
    if limit is not None and "elapsed_steps" in state:
        limit._elapsed_steps = state["elapsed_steps"]


def to_env_action(action: np.ndarray, space) -> np.ndarray:
    """Affine map from the policy's [-1, 1] to the Box ``[low, high]``."""
    low, high = space.low, space.high
    return (low + (np.asarray(action, dtype=np.float64) + 1.0) * 0.5 * (high - low)).astype(space.dtype)


def evaluate_policies(act_fn, env_id: str, n_members: int, episodes: int, seed, return_states: bool = False):
    """Undiscounted returns of deterministic episodes, shape (n_members, episodes).

    With ``return_states``: also the observations each member acted on, a list of (T_m, obs) arrays
    (every step of every episode; for KL measurements on the visited states).

    All ``n_members * episodes`` episodes run in lockstep so that each step is ONE batched forward pass of
    the ensemble: ``act_fn(obs)`` maps observations (n_members, episodes, obs) to actions in [-1, 1] of
    shape (n_members, episodes, |A|). Episode ``e`` of every member starts from the same seed
    ``seed + e``, so members are compared on the same initial states. ``seed`` may also be a sequence of one
    seed per member (stacked runs, ``--seeds``: every run evaluates its members from its own seeds).
    """
    seeds = [int(seed)] * n_members if np.ndim(seed) == 0 else [int(s) for s in seed]
    if len(seeds) != n_members:
        raise ValueError(f"{len(seeds)} evaluation seeds for {n_members} members")
    envs = [[make_env(env_id) for _ in range(episodes)] for _ in range(n_members)]
    obs_dim, act_dim = env_dims(envs[0][0])
    obs = np.zeros((n_members, episodes, obs_dim), dtype=np.float32)
    for m in range(n_members):
        for e in range(episodes):
            obs[m, e] = envs[m][e].reset(seed=seeds[m] + e)[0].reshape(-1)
    returns = np.zeros((n_members, episodes))
    running = np.ones((n_members, episodes), dtype=bool)
    visited = [[] for _ in range(n_members)]
    while running.any():
        if return_states:
            for m in range(n_members):
                visited[m].append(obs[m][running[m]].copy())
        actions = act_fn(obs)
        for m in range(n_members):
            for e in range(episodes):
                if not running[m, e]:
                    continue
                env = envs[m][e]
                o, r, term, trunc, _ = env.step(to_env_action(actions[m, e], env.action_space))
                returns[m, e] += float(r)
                obs[m, e] = np.asarray(o, dtype=np.float32).reshape(-1)
                if term or trunc:
                    running[m, e] = False
    for row in envs:
        for env in row:
            env.close()
    if return_states:
        return returns, [np.concatenate(v) for v in visited]
    return returns
