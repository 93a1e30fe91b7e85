"""Batched ensemble networks: K members' parameters stacked, one batched matmul per layer.

``EnsembleLinear`` holds weights (K, in, out) and biases (K, 1, out) and maps (K, B, in) -> (K, B, out)
with ``torch.baddbmm``: one kernel for all members, so a forward/backward/optimizer step costs about as
much as for one wider network. Member ``k`` is an ordinary ``nn.Linear`` with ``weight = W[k].T`` and is
initialised as one (uniform +-1/sqrt(in), PyTorch's default).

Heterogeneous ensembles (CIKD Sec. 5.5: widths 256 and 1024) are *grouped by width*: members with the
same width share one batched stack; :class:`Ensemble` runs each group and reassembles the outputs in
member order. (Padding a 256-wide member into a 1024 stack would waste 16x the FLOPs and change the
member's initialisation, so we group.) With one width there is one group and no reordering.

Critics are twin (Fujimoto et al., 2018; SAC v2): the 2K Q-networks are one stack of 2K members, the
pair of member ``k`` at rows (2k, 2k + 1).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["EnsembleLinear", "EnsembleMLP", "Ensemble", "affine", "repeat_rows"]


def _contiguous(grad: torch.Tensor) -> torch.Tensor:
    return grad.contiguous()


def repeat_rows(x: torch.Tensor, times: int) -> torch.Tensor:
    """Every row of the leading axis ``times`` times in a row (rows 0, 0, 1, 1, ... for 2), as
    ``repeat_interleave(times, dim=0)`` but by expand + reshape: no repeat count goes through a device
    tensor, so no host synchronisation on CUDA (the update must never wait for the host)."""
    return x.unsqueeze(1).expand(x.shape[0], times, *x.shape[1:]).reshape(x.shape[0] * times, *x.shape[1:])


def _twice(x: torch.Tensor) -> torch.Tensor:
    return repeat_rows(x, 2)


class EnsembleLinear(nn.Module):
    """K independent affine maps applied in one ``baddbmm``: y[k] = x[k] @ W[k] + b[k]."""

    def __init__(self, k: int, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(k, n_in, n_out))
        self.bias = nn.Parameter(torch.empty(k, 1, n_out))
        bound = 1.0 / math.sqrt(n_in)  # nn.Linear's default (kaiming_uniform with a = sqrt(5))
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return affine(x, self.weight, self.bias)


def affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x[k] @ W[k] + b[k] for stacked weights (K, in, out); the layout trick of narrow outputs below."""
    if weight.shape[-1] < 32:
        # narrow outputs (Q-values, Gaussian parameters): CPU bmm with a tiny last dimension is slow
        # (~4x here); the transposed product computes the same numbers with the wide axis last.
        # Its gradient wrt x arrives transposed (strided), and the ReLU backward of the layer below
        # is ~15x slower on strided memory than a copy to contiguous costs: make it contiguous.
        if x.requires_grad:
            x.register_hook(_contiguous)
        return torch.baddbmm(bias.transpose(1, 2), weight.transpose(1, 2), x.transpose(1, 2)).transpose(1, 2)
    return torch.baddbmm(bias, x, weight)


class EnsembleMLP(nn.Module):
    """K ReLU MLPs ``n_in -> width x depth -> n_out`` as one stack of EnsembleLinear layers."""

    def __init__(self, k: int, n_in: int, n_out: int, width: int, depth: int):
        super().__init__()
        sizes = [n_in] + [width] * depth + [n_out]
        self.layers = nn.ModuleList(EnsembleLinear(k, a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x)

    def forward_rows(self, x: torch.Tensor, rows: slice | torch.Tensor) -> torch.Tensor:
        """The MLPs of stack rows ``rows`` only (a slice, or an index tensor that may repeat rows: their weights
        gathered), on x (len(rows), B, in): some members' nets without the others' work."""
        for i, layer in enumerate(self.layers):
            x = affine(x, layer.weight[rows], layer.bias[rows])
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class _Group(nn.Module):
    """The members of one width: actor (K_g), twin critics (2 K_g) and their targets."""

    def __init__(self, k: int, obs_dim: int, act_dim: int, width: int, depth: int):
        super().__init__()
        self.k = k
        self.actor = EnsembleMLP(k, obs_dim, 2 * act_dim, width, depth)
        self.critic = EnsembleMLP(2 * k, obs_dim + act_dim, 1, width, depth)
        self.target_critic = EnsembleMLP(2 * k, obs_dim + act_dim, 1, width, depth)
        self.target_critic.load_state_dict(self.critic.state_dict())
        self.target_critic.requires_grad_(False)


class Ensemble(nn.Module):
    """K SAC members (actor, twin critics, target critics, entropy temperature), batched by width.

    Shapes: observations (K, B, obs), actions (K, B, |A|); ``policy`` -> mean, log_std (K, B, |A|);
    ``q`` -> (K, 2, B). Member k always sees row k of its inputs.
    """

    def __init__(self, obs_dim: int, act_dim: int, widths: tuple[int, ...], depth: int = 2,
                 init_alpha: float = 1.0, log_std_min: float = -20.0, log_std_max: float = 2.0):
        super().__init__()
        self.k = len(widths)
        self.obs_dim, self.act_dim, self.widths, self.depth = obs_dim, act_dim, tuple(widths), depth
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        distinct = sorted(set(widths), key=list(widths).index)
        self.group_members = [[m for m, w in enumerate(widths) if w == width] for width in distinct]
        self.groups = nn.ModuleList(_Group(len(ms), obs_dim, act_dim, w, depth) for w, ms in zip(distinct, self.group_members))
        order = [m for ms in self.group_members for m in ms]
        self.grouped = len(self.groups) > 1
        # order: member index of each row of the concatenated group outputs; inverse: row of each member
        self.register_buffer("order", torch.tensor(order), persistent=False)
        self.register_buffer("inverse", torch.argsort(torch.tensor(order)), persistent=False)
        self.log_alpha = nn.Parameter(torch.full((self.k,), math.log(init_alpha)))

    # ---- helpers: split member-ordered inputs by group, reassemble outputs in member order
    def _split(self, x: torch.Tensor) -> list[torch.Tensor]:
        if not self.grouped:
            return [x]
        x = x.index_select(0, self.order)
        return list(torch.split(x, [g.k for g in self.groups], dim=0))

    def _merge(self, parts: list[torch.Tensor]) -> torch.Tensor:
        if not self.grouped:
            return parts[0]
        return torch.cat(parts, dim=0).index_select(0, self.inverse)

    def actor_parameters(self):
        return [p for g in self.groups for p in g.actor.parameters()]

    def critic_parameters(self):
        return [p for g in self.groups for p in g.critic.parameters()]

    def policy(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian parameters (mean, log_std) of the pre-tanh action, each (K, B, |A|)."""
        out = self._merge([g.actor(x) for g, x in zip(self.groups, self._split(obs))])
        mean, log_std = out.chunk(2, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def _q(self, obs: torch.Tensor, act: torch.Tensor, target: bool) -> torch.Tensor:
        x = torch.cat([obs, act], dim=-1)
        parts = []
        for g, xg in zip(self.groups, self._split(x)):
            net = g.target_critic if target else g.critic
            parts.append(net(_twice(xg)).view(g.k, 2, xg.shape[1]))
        return self._merge(parts)

    def q(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Twin Q-values (K, 2, B) of the online critics."""
        return self._q(obs, act, target=False)

    def target_q(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Twin Q-values (K, 2, B) of the target critics."""
        return self._q(obs, act, target=True)

    @torch.no_grad()
    def soft_update_targets(self, tau: float) -> None:
        """Polyak averaging theta' <- (1 - tau) theta' + tau theta, fused over all tensors."""
        for g in self.groups:
            torch._foreach_lerp_(list(g.target_critic.parameters()), list(g.critic.parameters()), tau)

    @torch.no_grad()
    def soft_update_member_targets(self, tau: float, members) -> None:
        """Polyak averaging of the target critics of ``members`` only (the others' targets stay bit-identical)."""
        for m in members:
            gi, row = self.locate(m)
            g = self.groups[gi]
            for t, p in zip(g.target_critic.parameters(), g.critic.parameters()):
                t.data[2 * row:2 * row + 2].lerp_(p.data[2 * row:2 * row + 2], tau)

    # ---- one member alone (a teacher inside the ensemble): its rows of the stacks, no other member's work
    def member_policy(self, member: int, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std) of member ``member`` on obs (1, N, obs_dim), each (1, N, |A|)."""
        gi, row = self.locate(member)
        out = self.groups[gi].actor.forward_rows(obs, slice(row, row + 1))
        mean, log_std = out.chunk(2, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def member_q(self, member: int, obs: torch.Tensor, act: torch.Tensor, target: bool = False) -> torch.Tensor:
        """Twin Q-values (1, 2, N) of member ``member`` on obs (1, N, obs_dim), act (1, N, |A|)."""
        gi, row = self.locate(member)
        g = self.groups[gi]
        net = g.target_critic if target else g.critic
        x = torch.cat([obs, act], dim=-1).expand(2, -1, -1)
        return net.forward_rows(x, slice(2 * row, 2 * row + 2)).view(1, 2, obs.shape[1])

    # ---- per-member parameter access (hardcopy, frozen-teacher extraction)
    def member_tensors(self, member: int) -> dict[str, torch.Tensor]:
        """Views of member ``member``'s slices of every parameter (name -> tensor view)."""
        gi, row = self.locate(member)
        out = {}
        g = self.groups[gi]
        for prefix, net, rows in (("actor", g.actor, [row]), ("critic", g.critic, [2 * row, 2 * row + 1]),
                                  ("target_critic", g.target_critic, [2 * row, 2 * row + 1])):
            for name, p in net.named_parameters():
                out[f"{prefix}.{name}"] = p.data[rows[0]:rows[-1] + 1]
        out["log_alpha"] = self.log_alpha.data[member:member + 1]
        return out

    def locate(self, member: int) -> tuple[int, int]:
        """(group index, row in the group) of ``member``."""
        for gi, ms in enumerate(self.group_members):
            if member in ms:
                return gi, ms.index(member)
        raise IndexError(f"member {member} out of range (K = {self.k})")
