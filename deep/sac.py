"""Soft Actor-Critic for a batched ensemble (Haarnoja et al., 2018b, Alg. 1 and Sec. 5).

For every member k (all at once: the losses are summed over members, and since no parameter is shared
the gradient of the sum is each member's own gradient; Adam is elementwise, so ONE Adam over the stacked
parameters is exactly K independent Adams):

    critic:  L_Q = E[(Q_j(s,a) - y)^2], j = 1, 2,
             y = r + gamma (1 - terminated) [min_j Q'_j(s', a') - alpha log pi(a'|s')],  a' ~ pi(s')
    actor:   L_pi = E[alpha log pi(a~|s) - min_j Q_j(s, a~)],                           a~ ~ pi(s) (reparam.)
    alpha:   L_alpha = E[-log alpha (log pi(a~|s) + target_entropy)],  target_entropy = -|A|
    targets: Q' <- (1 - tau) Q' + tau Q

The update never synchronises with the host: losses are returned as device tensors and checked for
NaN/inf in bulk (see ``train``).
"""

from __future__ import annotations

import torch

from deep.config import SACConfig
from deep.kl import squashed_sample
from deep.networks import Ensemble
from deep.replay import Batch

__all__ = ["SACLearner", "make_adam", "soft_value", "sac_critic_target", "critic_regression_loss", "sac_actor_terms"]


def make_adam(params, lr: float) -> torch.optim.Optimizer:
    """Adam with the fused kernel (CPU and CUDA; ~10-70x faster than the per-tensor loop on CPU here),
    falling back to the multi-tensor ("foreach") implementation where fused is unavailable."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


def soft_value(ens: Ensemble, obs: torch.Tensor, generator: torch.Generator, target: bool = False,
               alpha: torch.Tensor | None = None) -> torch.Tensor:
    """One-sample soft value V(s) = min_j Q_j(s, a) - alpha log pi(a|s), a ~ pi(s); shape (K, B).

    ``alpha`` (K,): the temperature per member, default the ensemble's own (a rule's update may fix it or
    set it to 0: ``deep.config.RuleMapping.temperature``)."""
    mean, log_std = ens.policy(obs)
    act, log_prob = squashed_sample(mean, log_std, generator)
    q = ens.target_q(obs, act) if target else ens.q(obs, act)
    alpha = ens.log_alpha.exp() if alpha is None else alpha
    return q.min(dim=1).values - alpha[:, None] * log_prob


def sac_critic_target(ens: Ensemble, batch: Batch, gamma: float, generator: torch.Generator,
                      alpha: torch.Tensor | None = None) -> torch.Tensor:
    """y = r + gamma (1 - terminated) V'(s'), V' from the target critics; (K, B), no gradient."""
    with torch.no_grad():
        next_v = soft_value(ens, batch.next_obs, generator, target=True, alpha=alpha)
        return batch.rew + gamma * (1.0 - batch.terminated) * next_v


def critic_regression_loss(q: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """sum_k w_k sum_j mean_B (Q_kj - y_k)^2 for q (K, 2, B) and y (K, B) or (K, 2, B)."""
    if target.dim() == 2:
        target = target[:, None, :]
    per_member = (q - target).square().mean(-1).sum(-1)
    return per_member.sum() if weight is None else (weight * per_member).sum()


def sac_actor_terms(ens: Ensemble, obs: torch.Tensor, generator: torch.Generator, alpha: torch.Tensor | None = None,
                    critic=None):
    """Per-state SAC actor objective alpha log pi(a~|s) - Q(s, a~) (K, B) and log pi(a~|s) (K, B).

    Q is min_j Q_j of the ensemble's critics, or ``critic(obs, act)`` (K, B) if given (a rule may ascend
    another critic: ``deep.distill``); ``alpha`` (K,) as in :func:`soft_value`."""
    mean, log_std = ens.policy(obs)
    act, log_prob = squashed_sample(mean, log_std, generator)
    q = ens.q(obs, act).min(dim=1).values if critic is None else critic(obs, act)
    alpha = (ens.log_alpha.exp() if alpha is None else alpha).detach()[:, None]
    return alpha * log_prob - q, log_prob


class SACLearner:
    """The ensemble, its three optimizers and the SAC update. ``update`` does one step for all members."""

    def __init__(self, ens: Ensemble, cfg: SACConfig, generator: torch.Generator, compile_mode: str = "none"):
        self.ens, self.cfg, self.gen = ens, cfg, generator
        self.target_entropy = -float(ens.act_dim) if cfg.target_entropy is None else float(cfg.target_entropy)
        self.actor_opt = make_adam(ens.actor_parameters(), cfg.lr)
        self.critic_opt = make_adam(ens.critic_parameters(), cfg.lr)
        self.alpha_opt = make_adam([ens.log_alpha], cfg.lr)
        self._update_fn = self._update
        self._compile = {"requested": compile_mode, "ran": "none"}  # "ran": the mode the update actually ran in
        if compile_mode != "none":
            self._update_fn = _compiled_or_eager(self._update, compile_mode, self._compile)

    @property
    def compile_ran(self) -> str:
        """The torch.compile mode the update ran in: ``none`` (eager), ``default`` or ``reduce-overhead``; a
        compiled update that fell back to eager says ``none (fallback from MODE: ERROR)``, and
        ``reduce-overhead`` whose CUDA graphs inductor skipped (e.g. on CPU) says so. Written to every
        row of the eval table (``compile_mode``) so that a run's outputs state what ran."""
        return self._compile["ran"]

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self._update_fn(batch)

    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        ens = self.ens
        # critic
        target = sac_critic_target(ens, batch, self.cfg.gamma, self.gen)
        critic_loss = critic_regression_loss(ens.q(batch.obs, batch.act), target)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        # actor (its backward also reaches the critics; their grads are discarded by the next zero_grad)
        actor_obj, log_prob = sac_actor_terms(ens, batch.obs, self.gen)
        actor_loss = actor_obj.mean(-1).sum()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        # temperature
        alpha_loss = (-ens.log_alpha[:, None] * (log_prob.detach() + self.target_entropy)).mean(-1).sum()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()
        ens.soft_update_targets(self.cfg.tau)
        return {"critic": critic_loss.detach(), "actor": actor_loss.detach(), "alpha": alpha_loss.detach()}

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Actions in [-1, 1] for observations (K, B, obs): tanh(mean) or a sample."""
        mean, log_std = self.ens.policy(obs)
        if deterministic:
            return torch.tanh(mean)
        return squashed_sample(mean, log_std, self.gen)[0]

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_opt, "critic": self.critic_opt, "alpha": self.alpha_opt}


def _compiled_or_eager(fn, mode: str, record: dict):
    """torch.compile(fn, mode), falling back to eager if compilation fails on the first call; ``record["ran"]``
    says which ran, and the choice is logged (never a silent fallback)."""
    import logging
    import warnings

    log = logging.getLogger("deep.compile")
    compiled = torch.compile(fn, mode=mode)
    state = {"fn": compiled, "tried": False}

    def call(*args):
        if state["tried"]:
            return state["fn"](*args)
        state["tried"] = True
        from torch._dynamo.utils import counters

        skips = counters["inductor"]["cudagraph_skips"]
        try:
            out = compiled(*args)
        except Exception as err:  # noqa: BLE001 - any compiler failure falls back to eager, recorded and warned
            reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            record["ran"] = f"none (fallback from {mode}: {reason})"
            warnings.warn(f"torch.compile({mode}) failed ({reason}); running eagerly")
            log.warning("SAC update: torch.compile(mode=%r) failed, running eagerly: %s", mode, reason)
            state["fn"] = fn
            return fn(*args)
        skipped = counters["inductor"]["cudagraph_skips"] - skips
        if mode == "reduce-overhead" and skipped:  # compiled, but inductor ran some graphs without CUDA graphs
            record["ran"] = f"reduce-overhead (CUDA graphs skipped in {skipped} graph(s))"
            log.warning("SAC update: torch.compile(mode='reduce-overhead') skipped CUDA graphs in %d graph(s)", skipped)
        else:
            record["ran"] = mode
            log.info("SAC update: compiled with torch.compile(mode=%r)", mode)
        return out

    return call
