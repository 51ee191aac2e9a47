"""Non-finite losses or gradients never reach the parameters."""

from __future__ import annotations

import math

import torch
from tensordict import TensorDict

from torchrl_shacpp.objectives import SHACActorLoss
from torchrl_shacpp.optim import FiniteGradientStep, skip_non_finite_steps
from toy_env import make_point_mass_env, open_loop_actor, quadratic_critic
from torchrl_shacpp.collectors import WindowCollector


def test_injected_nan_reward_leaves_parameters_finite_and_is_counted(caplog):
    torch.manual_seed(0)
    actor = open_loop_actor(0.1 * torch.randn(8, 2, 1, 2))
    loss = SHACActorLoss(actor, quadratic_critic(1.0), action_bound_coef=0.0)
    loss.set_keys(reward=("agents", "reward"), value=("agents", "state_value"))
    step = FiniteGradientStep(torch.optim.Adam(loss.parameters(), lr=0.1), max_grad_norm=1.0)
    collector = WindowCollector(make_point_mass_env(torch.randn(2, 1, 2), [0, 0], 100), actor, window_length=4)
    before = TensorDict.from_module(actor).clone()

    window = collector.rollout()
    reward = window["next", "agents", "reward"]
    window["next", "agents", "reward"] = reward + torch.where(torch.arange(4)[:, None, None] == 2, math.nan, 0.0)
    info = step(loss(window)["loss_actor"])
    assert info["skipped"] == 1.0 and step.skipped_steps == 1
    assert (TensorDict.from_module(actor) == before).all()
    assert "non-finite loss" in caplog.text

    info = step(loss(collector.rollout())["loss_actor"])
    assert info["skipped"] == 0.0 and math.isfinite(info["grad_norm"])
    assert not (TensorDict.from_module(actor) == before).all()
    assert all(torch.isfinite(p).all() for p in actor.parameters())


def test_infinite_gradient_of_a_finite_loss_is_skipped():
    weight = torch.nn.Parameter(torch.zeros(3))
    step = FiniteGradientStep(torch.optim.SGD([weight], lr=1.0))
    info = step(weight.abs().sqrt().sum())  # finite value, infinite derivative at 0
    assert info["skipped"] == 1.0 and not math.isfinite(info["grad_norm"])
    assert weight.grad is None and not weight.any()


def test_gradient_norm_is_clipped():
    weight = torch.nn.Parameter(torch.zeros(2))
    step = FiniteGradientStep(torch.optim.SGD([weight], lr=1.0), max_grad_norm=1.0)
    info = step((weight * torch.tensor([30.0, 40.0])).sum())
    assert info["grad_norm"] == 50.0
    torch.testing.assert_close(weight.detach(), torch.tensor([-0.6, -0.8]))


def test_guarded_optimizer_skips_a_step_with_a_non_finite_gradient():
    """``skip_non_finite_steps`` for optimisers stepped by others (BenchMARL): the step with a NaN gradient changes
    neither the parameters nor Adam's state, is counted, and the next finite step goes through."""
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([weight], lr=0.1)
    skipped = []
    skip_non_finite_steps(optimizer, lambda: skipped.append(1))

    (weight * torch.tensor([1.0, math.nan, 1.0])).sum().backward()
    optimizer.step()
    assert torch.equal(weight.detach(), torch.ones(3)) and not optimizer.state and len(skipped) == 1

    optimizer.zero_grad()
    weight.sum().backward()
    optimizer.step()
    assert torch.all(weight.detach() < 1) and len(skipped) == 1
