"""Non-finite losses or gradients never reach the parameters."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import IndependentNormal, NormalParamExtractor, ProbabilisticActor

from torchrl_shacpp.objectives import SHACActorLoss
from torchrl_shacpp.optim import (
    FiniteGradientStep,
    PolicyMeanStepBound,
    bound_outlier_gradients,
    skip_non_finite_steps,
)
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


def test_a_gradient_above_skip_grad_norm_is_skipped_and_one_at_it_is_clipped(caplog):
    """``skip_grad_norm`` skips a step whose gradient norm exceeds it, leaving the parameters and Adam's state alone
    and counting it; a gradient at the threshold is clipped and stepped as before."""
    weight = torch.nn.Parameter(torch.zeros(2))
    step = FiniteGradientStep(torch.optim.Adam([weight], lr=0.1), max_grad_norm=1.0, skip_grad_norm=50.0)
    info = step((weight * torch.tensor([30.0, 40.001])).sum())
    assert info == {"grad_norm": pytest.approx(50.0008), "skipped": 1.0} and step.skipped_steps == 1
    assert not weight.any() and not step.optimizer.state and weight.grad is None
    assert "gradient norm above 50" in caplog.text
    info = step((weight * torch.tensor([30.0, 40.0])).sum())
    assert info == {"grad_norm": 50.0, "skipped": 0.0} and step.skipped_steps == 1
    assert torch.all(weight.detach() < 0)


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


def linear_policy() -> TensorDictModule:
    """μ(o) = W o + b: linear in its parameters, so that a step shrunk by s moves μ by exactly s times as much."""
    torch.manual_seed(0)
    return TensorDictModule(torch.nn.Linear(3, 2), in_keys=["observation"], out_keys=["loc"])


def rms_change(policy: TensorDictModule, window: TensorDict, after: TensorDict, before: TensorDict) -> float:
    """The RMS change of the policy's mean on ``window`` from parameters ``before`` to ``after``."""
    with torch.no_grad():
        means = []
        for parameters in (after, before):
            parameters.to_module(policy)
            means.append(policy(window.clone())["loc"])
    return (means[0] - means[1]).pow(2).mean().sqrt().item()


def test_a_policy_step_that_moves_the_mean_too_far_is_shrunk_to_the_bound():
    """Δμ's root mean square over the window's observations and action components after the step equals the bound,
    along the step's own direction; a step within the bound is left as it was."""
    for max_change, shrunk in ((0.05, True), (100.0, False)):
        policy = linear_policy()
        window = TensorDict(observation=torch.randn(16, 3), batch_size=[16])
        parameters = list(policy.parameters())
        plain = TensorDict.from_module(policy).clone()
        step = FiniteGradientStep(torch.optim.SGD(parameters, lr=1.0))
        loss = policy(window.clone())["loc"].sum()  # its full step moves μ by 16 x |o|² per component: far
        info = PolicyMeanStepBound(policy, parameters, "loc", max_change)(window, lambda: step(loss))
        after = TensorDict.from_module(policy).clone()
        full_change = info["mean_change"]
        assert info["skipped"] == 0.0 and full_change > 0.05
        if shrunk:
            assert info["step_scale"] == max_change / full_change
            assert math.isclose(rms_change(policy, window, after, plain), max_change, rel_tol=1e-4)
        else:
            assert info["step_scale"] == 1.0
            assert math.isclose(rms_change(policy, window, after, plain), full_change, rel_tol=1e-6)
        unbounded = linear_policy()
        sgd_step = -torch.autograd.grad(unbounded(window.clone())["loc"].sum(), list(unbounded.parameters()))[0]
        direction = (after - plain).flatten_keys()
        torch.testing.assert_close(direction["module.weight"], info["step_scale"] * sgd_step)


def test_the_bound_reads_the_mean_without_drawing_an_action():
    """A stochastic policy's bounded step leaves the random stream as the plain step does (the bound reads the mean
    deterministically), so that a run with the bound draws its actions as one without it does."""
    torch.manual_seed(0)
    actor = ProbabilisticActor(
        TensorDictModule(
            torch.nn.Sequential(torch.nn.Linear(3, 4), NormalParamExtractor()), ["observation"], ["loc", "scale"]
        ),
        in_keys=["loc", "scale"], distribution_class=IndependentNormal,
    )  # fmt: skip
    window = TensorDict(observation=torch.randn(16, 3), batch_size=[16])
    bound = PolicyMeanStepBound(actor, list(actor.parameters()), "loc", 1e-3)
    state = torch.get_rng_state()
    with set_exploration_type(ExplorationType.RANDOM):  # as while collecting
        info = bound(window, lambda: {"skipped": 1.0})  # a skipped step: the mean does not move
        assert torch.equal(torch.get_rng_state(), state)
        assert info["mean_change"] == 0.0 and info["step_scale"] == 1.0
        actor(window.clone())  # a plain call draws an action
    assert not torch.equal(torch.get_rng_state(), state)


def test_outlier_gradient_rows_are_bounded_by_a_multiple_of_the_median_row():
    """Rows' gradient norms 1, 2, 3, 300 and 0: the (lower) median of the non-zero ones is 2, so with ratio 2 the rows
    above 4 are scaled to norm 4 in their own direction, the others pass unchanged (the zero row does not count)."""
    leaf = torch.zeros(5, 2, requires_grad=True)
    bounded = bound_outlier_gradients(leaf * 1.0, max_ratio=2.0)
    incoming = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [180.0, 240.0], [0.0, 0.0]])
    (bounded * incoming).sum().backward()
    expected = incoming.clone()
    expected[3] = torch.tensor([2.4, 3.2])  # norm 4, the direction of (180, 240)
    torch.testing.assert_close(leaf.grad, expected)
    with pytest.raises(ValueError, match="max_ratio=0 must be a finite number > 0"):
        bound_outlier_gradients(leaf * 1.0, max_ratio=0)
