"""The batched ensemble equals K separate networks with the same weights."""

import torch
from torch import nn

from deep.networks import Ensemble, EnsembleMLP


def _separate_mlp(stack: EnsembleMLP, k: int) -> nn.Sequential:
    layers = []
    for i, layer in enumerate(stack.layers):
        lin = nn.Linear(layer.weight.shape[1], layer.weight.shape[2])
        with torch.no_grad():
            lin.weight.copy_(layer.weight[k].T)
            lin.bias.copy_(layer.bias[k, 0])
        layers.append(lin)
        if i < len(stack.layers) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def test_batched_mlp_forward_and_gradients_equal_separate_networks():
    torch.manual_seed(0)
    k, b = 3, 7
    stack = EnsembleMLP(k, 5, 4, width=16, depth=2)
    x = torch.randn(k, b, 5)
    y = stack(x)
    y.square().sum().backward()
    for m in range(k):
        net = _separate_mlp(stack, m)
        ym = net(x[m])
        assert torch.allclose(y[m], ym, atol=1e-6)
        ym.square().sum().backward()
        assert torch.allclose(stack.layers[0].weight.grad[m], net[0].weight.grad.T, atol=1e-5)


def test_heterogeneous_ensemble_members_equal_their_own_groups():
    torch.manual_seed(1)
    widths = (8, 32, 8)
    ens = Ensemble(5, 2, widths, depth=2)
    assert [len(g.actor.layers[0].weight[0, 0]) for g in ens.groups] == [8, 32]
    obs = torch.randn(3, 6, 5)
    act = torch.rand(3, 6, 2) * 2 - 1
    mean, log_std = ens.policy(obs)
    q = ens.q(obs, act)
    assert q.shape == (3, 2, 6) and mean.shape == (3, 6, 2)
    for m, w in enumerate(widths):
        gi, row = ens.locate(m)
        g = ens.groups[gi]
        assert g.actor.layers[0].weight.shape[-1] == w
        actor = _separate_mlp(g.actor, row)
        out = actor(obs[m])
        assert torch.allclose(mean[m], out[:, :2], atol=1e-6)
        for j in range(2):
            critic = _separate_mlp(g.critic, 2 * row + j)
            assert torch.allclose(q[m, j], critic(torch.cat([obs[m], act[m]], -1))[:, 0], atol=1e-6)


def test_target_critics_start_equal_and_polyak_update():
    ens = Ensemble(3, 1, (8, 8))
    obs, act = torch.randn(2, 4, 3), torch.rand(2, 4, 1)
    assert torch.equal(ens.q(obs, act), ens.target_q(obs, act))
    before = [p.clone() for p in ens.groups[0].target_critic.parameters()]
    with torch.no_grad():
        for p in ens.groups[0].critic.parameters():
            p.add_(1.0)
    ens.soft_update_targets(0.25)
    for p0, pt, pc in zip(before, ens.groups[0].target_critic.parameters(), ens.groups[0].critic.parameters()):
        assert torch.allclose(pt, 0.75 * p0 + 0.25 * pc)
