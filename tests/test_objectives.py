"""The SHAC actor loss and the TD(λ) value loss against closed forms and hand-written recursions."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torchrl.objectives import SoftUpdate
from toy_env import (
    cumulative_world_model,
    detach_point_masses,
    make_point_mass_env,
    open_loop_actor,
    quadratic_critic,
    quadratic_reward_model,
)

from torchrl_shacpp.collectors import WindowCollector
from torchrl_shacpp.modules import spliced_world_model
from torchrl_shacpp.objectives import RewardModelLoss, SHACActorLoss, TDLambdaValueLoss, WorldModelLoss

GAMMA = 0.9
K_CRITIC = 0.5
MULTI_AGENT_KEYS = dict(reward=("agents", "reward"), value=("agents", "state_value"))


def closed_form_window(start, actions, segments, gamma, k, value_gradient: float = 1.0):
    """Objective and its gradient w.r.t. the actions, from x_{t+1} = x_s + Σ_{u=s..t} a_u and r = -|x|²; the
    bootstrap -k|x|² counts in the objective, and ``value_gradient`` times in its gradient.

    ``segments[b]`` lists ``(s, e, terminated)``: steps s..e of env b form one episode segment.
    """
    objective = torch.zeros(())
    grad = torch.zeros_like(actions)  # [T, B, n, d]
    for b, env_segments in enumerate(segments):
        for s, e, terminated in env_segments:
            x = start[b] + torch.cumsum(actions[s : e + 1, b], dim=0)  # x_{t+1} for t = s..e
            discount = gamma ** torch.arange(e - s + 1, dtype=x.dtype)
            objective = objective - (discount[:, None] * x.pow(2).sum(-1)).sum()
            dx = -2 * discount[:, None, None] * x  # ∂J/∂x_{t+1} from the rewards
            if not terminated:
                objective = objective - gamma ** (e - s + 1) * k * x[-1].pow(2).sum()
                dx[-1] -= gamma ** (e - s + 1) * 2 * k * x[-1] * value_gradient
            # a_u moves every x_{t+1} with t >= u: reverse cumulative sum.
            grad[s : e + 1, b] = dx.flip(0).cumsum(0).flip(0)
    return objective, grad


SEGMENTS = [  # env 0 terminates on the 3rd step of each episode; every episode is truncated at 5 steps
    [(0, 2, True), (3, 5, True), (6, 7, False)],
    [(0, 4, False), (5, 7, False)],
    [(0, 4, False), (5, 7, False)],
]


def point_mass_window(graph: str = "simulator"):
    """A window of 8 steps on 3 envs × 2 agents with a termination and a truncation inside; and its inputs."""
    torch.manual_seed(0)
    num_envs, n_agents, dim, horizon = 3, 2, 2, 8
    start = torch.randn(num_envs, n_agents, dim)
    actions = 0.3 * torch.randn(horizon, num_envs, n_agents, dim)
    env = make_point_mass_env(start, terminate_at=[3, 0, 0], max_steps=5)
    actor = open_loop_actor(actions.clone())
    collector = WindowCollector(env, actor, window_length=horizon, cut_graph=detach_point_masses, graph=graph)
    return collector.rollout(), actor, start, actions


def loss_normaliser(actions: torch.Tensor) -> float:
    """The actor loss's divisor for ``[h, B, n, d]`` actions: B · n · h."""
    return actions[0].numel() / actions.shape[-1] * actions.shape[0]


def check_actor_loss(loss, window, actor, start, actions, segments):
    loss.set_keys(**MULTI_AGENT_KEYS, predicted_reward=("agents", "predicted_reward"))
    loss_actor = loss(window)["loss_actor"]
    loss_actor.backward()
    objective, grad = closed_form_window(start, actions, segments, GAMMA, K_CRITIC, loss.value_gradient)
    normaliser = loss_normaliser(actions)
    torch.testing.assert_close(loss_actor, -objective / normaliser)
    torch.testing.assert_close(actor.module.actions.grad, -grad / normaliser)


def test_actor_loss_gradient_matches_closed_form_with_termination_and_truncation():
    window, actor, start, actions = point_mass_window()
    terminated = window["next", "terminated"].squeeze(-1)
    truncated = window["next", "truncated"].squeeze(-1)
    assert terminated[0].nonzero().squeeze(-1).tolist() == [2, 5]
    assert truncated[1].nonzero().squeeze(-1).tolist() == [4]
    assert not terminated[1:].any() and not truncated[0].any()

    critic = quadratic_critic(K_CRITIC)
    loss = SHACActorLoss(actor, critic, gamma=GAMMA, action_bound_coef=0.0)
    check_actor_loss(loss, window, actor, start, actions, SEGMENTS)
    assert critic.module.k.grad is None, "the critic must be held out of the actor loss"


@pytest.mark.parametrize("value_gradient", [0.0, 0.5, 4.0])
def test_actor_loss_value_gradient_keeps_the_objective_and_weighs_the_critics_gradient(value_gradient: float):
    """``value_gradient`` α: the same objective, and the rewards' gradient plus α times the critic's (0: none; above
    1 amplified)."""
    window, actor, start, actions = point_mass_window()
    loss = SHACActorLoss(actor, quadratic_critic(K_CRITIC), gamma=GAMMA, action_bound_coef=0.0,
                         value_gradient=value_gradient)  # fmt: skip
    check_actor_loss(loss, window, actor, start, actions, SEGMENTS)
    _, with_value = closed_form_window(start, actions, SEGMENTS, GAMMA, K_CRITIC)
    assert not torch.allclose(actor.module.actions.grad, -with_value / loss_normaliser(actions))


def test_shac_plus_learned_reward_on_simulator_observations_matches_closed_form():
    window, actor, start, actions = point_mass_window()
    reward_model = quadratic_reward_model(1.0)  # equals the env's reward, so the closed form is SHAC's
    window["next", "agents", "reward"] = torch.zeros_like(window["next", "agents", "reward"])  # must be unused
    loss = SHACActorLoss(actor, quadratic_critic(K_CRITIC), gamma=GAMMA, action_bound_coef=0.0,
                         reward_model=reward_model)  # fmt: skip
    check_actor_loss(loss, window, actor, start, actions, SEGMENTS)
    assert reward_model.module.c.grad is None


def test_shac_plus_plus_gradient_reaches_the_policy_without_simulator_gradients():
    window, actor, start, actions = point_mass_window(graph="policy")
    assert not window["next", "agents", "observation"].requires_grad
    world_model, reward_model = cumulative_world_model(), quadratic_reward_model(1.0)
    loss = SHACActorLoss(actor, quadratic_critic(K_CRITIC), gamma=GAMMA, action_bound_coef=0.0,
                         reward_model=reward_model, world_model=world_model)  # fmt: skip
    # The exact world model reproduces each env's first segment; later segments get no credit.
    check_actor_loss(loss, window, actor, start, actions, [segments[:1] for segments in SEGMENTS])
    assert world_model.module.s.grad is None and reward_model.module.c.grad is None


@pytest.mark.parametrize("world_gradient", [0.0, 2.0])
def test_shac_plus_plus_world_gradient_keeps_the_objective_and_weighs_the_world_models_gradient(world_gradient):
    """``world_gradient`` β: the same objective; β times the gradient through the predicted observations, and the
    reward model's own action term unscaled."""
    window, actor, start, actions = point_mass_window(graph="policy")
    first_segments = [segments[:1] for segments in SEGMENTS]
    c = 0.7  # the reward model's action term -c|a|²: r = -|ô'|² - c|a|²

    def reward_model() -> TensorDictModule:
        def reward(next_observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
            return -(next_observation.pow(2) + c * action.pow(2)).sum(-1, keepdim=True)

        keys = [("next", "agents", "observation"), ("agents", "action")]
        return TensorDictModule(reward, in_keys=keys, out_keys=[("agents", "predicted_reward")])

    loss = SHACActorLoss(actor, quadratic_critic(K_CRITIC), gamma=GAMMA, action_bound_coef=0.0,
                         reward_model=reward_model(), world_model=cumulative_world_model(),
                         world_gradient=world_gradient)  # fmt: skip
    loss.set_keys(**MULTI_AGENT_KEYS, predicted_reward=("agents", "predicted_reward"))
    with pytest.raises(KeyError, match="not the loss's action key 'action': set it with set_keys"):
        loss(window)
    loss.set_keys(action=("agents", "action"))
    loss_actor = loss(window)["loss_actor"]
    loss_actor.backward()

    objective, through_world = closed_form_window(start, actions, first_segments, GAMMA, K_CRITIC)
    credited = torch.zeros_like(actions)  # the action term's discount on each env's first segment, 0 after
    for b, env_segments in enumerate(first_segments):
        _, e, _ = env_segments[0]
        credited[: e + 1, b] = (GAMMA ** torch.arange(e + 1, dtype=actions.dtype))[:, None, None]
    objective = objective - c * (credited * actions.pow(2)).sum()
    direct = -2 * c * credited * actions
    normaliser = loss_normaliser(actions)
    torch.testing.assert_close(loss_actor, -objective / normaliser)
    torch.testing.assert_close(actor.module.actions.grad, -(world_gradient * through_world + direct) / normaliser)


def test_world_gradient_needs_a_world_model():
    with pytest.raises(ValueError, match="world_gradient=2.0 weighs the gradient through a world model"):
        SHACActorLoss(open_loop_actor(torch.zeros(1, 1, 1, 1)), quadratic_critic(1.0), action_bound_coef=0,
                      reward_model=quadratic_reward_model(1.0), world_gradient=2.0)  # fmt: skip


class _PointMassTransition(torch.nn.Module):
    """The point mass's exact one-step dynamics x' = x + a, as a transition model."""

    def forward(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return observation + action


def test_spliced_shac_plus_plus_with_exact_models_is_shac_on_every_segment():
    """The spliced world model follows the real rollout through its resets: with the exact transition and reward,
    SHAC++'s objective and gradient are SHAC's closed form over every episode segment of the window."""
    window, actor, start, actions = point_mass_window(graph="policy")
    loss = SHACActorLoss(actor, quadratic_critic(K_CRITIC), gamma=GAMMA, action_bound_coef=0.0,
                         reward_model=quadratic_reward_model(1.0),
                         world_model=spliced_world_model(_PointMassTransition()))  # fmt: skip
    check_actor_loss(loss, window, actor, start, actions, SEGMENTS)


def test_shac_plus_plus_gradient_vanishes_with_a_constant_reward_model_and_critic():
    window, actor, _, _ = point_mass_window(graph="policy")
    loss = SHACActorLoss(actor, quadratic_critic(0.0), action_bound_coef=0.0,
                         reward_model=quadratic_reward_model(0.0), world_model=cumulative_world_model())  # fmt: skip
    loss.set_keys(**MULTI_AGENT_KEYS, predicted_reward=("agents", "predicted_reward"))
    loss(window)["loss_actor"].backward()
    assert not actor.module.actions.grad.any()


def test_world_model_needs_a_reward_model():
    with pytest.raises(ValueError, match="needs a reward_model"):
        SHACActorLoss(open_loop_actor(torch.zeros(1, 1, 1, 1)), quadratic_critic(1.0), action_bound_coef=0,
                      world_model=cumulative_world_model())  # fmt: skip


def test_reward_model_loss_is_the_mse_to_the_env_reward():
    window, *_ = point_mass_window(graph="none")
    flat = window.reshape(-1)
    loss = RewardModelLoss(quadratic_reward_model(2.0))
    loss.set_keys(reward=("agents", "reward"), predicted_reward=("agents", "predicted_reward"))
    reward = flat["next", "agents", "reward"]  # the model predicts twice the true reward
    torch.testing.assert_close(loss(flat)["loss_reward"], reward.pow(2).mean())


def test_reward_model_loss_with_a_huber_delta_is_hubers_loss_of_the_residual():
    """Quadratic up to delta, linear beyond: the residual's pull on the model is clipped at delta."""
    window, *_ = point_mass_window(graph="none")
    flat = window.reshape(-1)
    residual = flat["next", "agents", "reward"]  # the model predicts twice the true reward
    delta = residual.abs().median().item()  # both sides of delta occur
    loss = RewardModelLoss(quadratic_reward_model(2.0), huber_delta=delta)
    loss.set_keys(reward=("agents", "reward"), predicted_reward=("agents", "predicted_reward"))
    size = residual.abs()
    expected = torch.where(size <= delta, residual.pow(2) / 2, delta * (size - delta / 2)).mean()
    torch.testing.assert_close(loss(flat)["loss_reward"], expected)
    with pytest.raises(ValueError, match="huber_delta"):
        RewardModelLoss(quadratic_reward_model(1.0), huber_delta=0.0)
    with pytest.raises(ValueError, match="replaces loss_function='l1'"):
        RewardModelLoss(quadratic_reward_model(1.0), huber_delta=0.1, loss_function="l1")


def test_reward_model_loss_with_observation_noise_is_the_expected_mse_under_that_noise():
    window, *_ = point_mass_window(graph="none")
    flat = window.reshape(-1)
    sigma = 0.3
    loss = RewardModelLoss(quadratic_reward_model(1.0), observation_noise=sigma)  # exact without noise
    loss.set_keys(
        reward=("agents", "reward"), predicted_reward=("agents", "predicted_reward"), observation=("agents", "observation")
    )
    observations = flat["next", "agents", "observation"].clone()
    torch.manual_seed(0)
    mean_loss = torch.stack([loss(flat)["loss_reward"].detach() for _ in range(4000)]).mean()
    # The model reads o' + ε (d = 2): the error is 2 o'·ε + |ε|², whose mean square is 4σ²|o'|² + (d² + 2d)σ⁴.
    expected = (4 * sigma**2 * flat["next", "agents", "observation"].pow(2).sum(-1) + 8 * sigma**4).mean()
    torch.testing.assert_close(mean_loss, expected, rtol=0.02, atol=0)
    assert (loss(flat.clone()) != loss(flat.clone())).all()  # fresh noise at every call
    assert loss.eval()(flat)["loss_reward"].item() < 1e-12  # in eval mode, the model's error on the clean batch
    clean = RewardModelLoss(quadratic_reward_model(1.0))
    clean.set_keys(reward=("agents", "reward"), predicted_reward=("agents", "predicted_reward"))
    assert clean(flat)["loss_reward"].item() < 1e-12  # and the noisy calls left the batch's observations as they were
    torch.testing.assert_close(flat["next", "agents", "observation"], observations, rtol=0, atol=0)


def test_reward_model_loss_refuses_a_negative_observation_noise():
    with pytest.raises(ValueError, match="observation_noise=-0.1 must be a finite number >= 0"):
        RewardModelLoss(quadratic_reward_model(1.0), observation_noise=-0.1)


def test_world_model_loss_ignores_steps_after_an_episode_end_in_the_window():
    window, *_ = point_mass_window(graph="none")
    loss = WorldModelLoss(cumulative_world_model(1.0))
    loss.set_keys(observation=("agents", "observation"))
    # Exact up to the first episode end; the resets after it would otherwise make the error large.
    assert loss(window)["loss_world"].item() < 1e-12
    scaled = WorldModelLoss(cumulative_world_model(2.0))
    scaled.set_keys(observation=("agents", "observation"))
    observation, next_observation = window["agents", "observation"], window["next", "agents", "observation"]
    first = observation[:, :1]
    alive = torch.ones(3, 8, dtype=torch.bool)
    alive[0, 3:] = alive[1:, 5:] = False  # steps after env 0's termination at t=2 and the truncations at t=4
    # With s = 2 the predicted displacement from o_0 is doubled: the error is the true displacement.
    errors = (observation - first).pow(2) + (next_observation - first).pow(2)
    expected = errors[alive].sum() / (2 * alive.sum() * 2 * 2)
    torch.testing.assert_close(scaled(window)["loss_world"], expected)


def test_actor_loss_uses_the_given_bootstrap_params():
    torch.manual_seed(1)
    start = torch.randn(2, 1, 2)
    actions = 0.3 * torch.randn(4, 2, 1, 2)
    window = WindowCollector(
        make_point_mass_env(start, [0, 0], max_steps=100), open_loop_actor(actions), window_length=4
    ).rollout()
    critic = quadratic_critic(K_CRITIC)
    frozen = TensorDict.from_module(critic).clone()
    frozen["module", "k"] = torch.tensor(2.0)
    losses = {}
    for name, params in (("online", None), ("frozen", frozen)):
        loss = SHACActorLoss(open_loop_actor(actions), critic, gamma=GAMMA, value_params=params, action_bound_coef=0)
        loss.set_keys(**MULTI_AGENT_KEYS)
        losses[name] = loss(window)["loss_actor"]
    segments = [[(0, 3, False)], [(0, 3, False)]]
    for name, k in (("online", K_CRITIC), ("frozen", 2.0)):
        objective, _ = closed_form_window(start, actions, segments, GAMMA, k)
        torch.testing.assert_close(losses[name], -objective / 8)


def test_action_bound_penalty_closed_form():
    loc = torch.tensor([[[1.5, -0.2]], [[-3.0, 0.9]]], requires_grad=True)
    window = TensorDict({"agents": {"loc": loc}}, batch_size=[2])
    loss = SHACActorLoss(
        open_loop_actor(torch.zeros(1, 2, 1, 2)),
        quadratic_critic(1.0),
        action_low=-1.0,
        action_high=1.0,
        action_bound_coef=2.0,
    )
    loss.set_keys(loc=("agents", "loc"))
    penalty = loss.action_bound_penalty(window)
    torch.testing.assert_close(penalty, torch.tensor(2.0 * (0.5**2 + 2.0**2) / 4))
    penalty.backward()
    expected = 2.0 * 2 * torch.tensor([[[0.5, 0.0]], [[-2.0, 0.0]]]) / 4
    torch.testing.assert_close(loc.grad, expected)


def test_control_cost_closed_form_and_off_by_default():
    loc = torch.tensor([[[1.5, -0.2]], [[-3.0, 0.9]]], requires_grad=True)
    window = TensorDict({"agents": {"loc": loc}}, batch_size=[2])
    loss = SHACActorLoss(open_loop_actor(torch.zeros(1, 2, 1, 2)), quadratic_critic(1.0), action_bound_coef=0,
                         action_mean_coef=0.5)  # fmt: skip
    loss.set_keys(loc=("agents", "loc"))
    weight = loss.action_mean_weight(loss.return_gradients(window, (loc * 0).sum())[0])
    assert weight.item() == 0.5
    penalty = loss.action_mean_penalty(window, weight)
    torch.testing.assert_close(penalty, 0.5 * loc.detach().pow(2).mean())
    penalty.backward()
    torch.testing.assert_close(loc.grad, 2 * 0.5 * loc.detach() / 4)
    off = SHACActorLoss(open_loop_actor(torch.zeros(1, 2, 1, 2)), quadratic_critic(1.0), action_bound_coef=0)
    off.set_keys(loc=("agents", "loc"))
    assert off.action_mean_penalty(window, off.action_mean_weight(off.return_gradients(window, loc.sum())[0])).item() == 0
    assert "return_gradient_scale" not in loss.state_dict()  # checkpoints from before the relative cost still load
    with pytest.raises(ValueError, match="action_mean_coef"):
        SHACActorLoss(open_loop_actor(torch.zeros(1, 1, 1, 1)), quadratic_critic(1.0), action_bound_coef=0,
                      action_mean_coef=-1.0)  # fmt: skip


def test_relative_control_cost_scales_with_a_running_mean_of_the_return_gradient():
    """``action_mean_relative``: the cost is c·ḡ·mean(μ²), ḡ the running mean of mean_i |M ∂L/∂μ_i| (the first
    window with a gradient sets it, later ones move it by 1 - momentum), not differentiated; nothing moves it in eval
    mode, and a window whose return has no gradient lowers it without zeroing it."""
    loc = torch.tensor([[[1.5, -0.2]], [[-3.0, 0.9]]], requires_grad=True)
    window = TensorDict({"agents": {"loc": loc}}, batch_size=[2])
    loss = SHACActorLoss(open_loop_actor(torch.zeros(1, 2, 1, 2)), quadratic_critic(1.0), action_bound_coef=0,
                         action_mean_coef=0.5, action_mean_relative=True, action_mean_momentum=0.75)  # fmt: skip
    loss.set_keys(loc=("agents", "loc"))
    def weight_after(loss_actor: torch.Tensor) -> torch.Tensor:
        return loss.action_mean_weight(loss.return_gradients(window, loss_actor)[0])

    assert weight_after((loc * 0).sum()).item() == 0.0  # no gradient yet: no scale
    assert "return_gradient_scale" in loss.state_dict()  # a restored run keeps its running mean
    weights = torch.tensor([[[0.2, -0.1]], [[0.0, 0.3]]])
    first = 4 * weights.abs().mean()  # M = 4 mean elements: g = 4 ∂L/∂μ = 4 w
    weight = weight_after((weights * loc).sum())
    torch.testing.assert_close(weight, 0.5 * first)
    penalty = loss.action_mean_penalty(window, weight)
    torch.testing.assert_close(penalty, 0.5 * first * loc.detach().pow(2).mean())
    penalty.backward()
    torch.testing.assert_close(loc.grad, 0.5 * first * 2 * loc.detach() / 4)
    second = 4 * (3 * weights).abs().mean()
    weight_after((3 * weights * loc).sum())
    torch.testing.assert_close(loss.return_gradient_scale, 0.75 * first + 0.25 * second)
    loss.eval()
    weight_after((10 * weights * loc).sum())
    torch.testing.assert_close(loss.return_gradient_scale, 0.75 * first + 0.25 * second)
    loss.train()
    weight_after((loc * 0).sum())
    torch.testing.assert_close(loss.return_gradient_scale, 0.75 * (0.75 * first + 0.25 * second))
    with pytest.raises(ValueError, match="action_mean_coef > 0"):
        SHACActorLoss(open_loop_actor(torch.zeros(1, 1, 1, 1)), quadratic_critic(1.0), action_bound_coef=0,
                      action_mean_relative=True)  # fmt: skip


@pytest.mark.parametrize("world_model", [False, True])
def test_gated_control_cost_reaches_only_credited_elements_whose_action_has_a_small_return_gradient(world_model):
    """``action_mean_gate`` τ: the relative cost sums c·ḡ·μ_i² / M over the elements whose action gradient has
    |h_i| < τ ḡ only, ḡ from the mean's gradient g (0 where the clamp cut the action off from the mean, though the
    return does read that action); with a world model that cannot see resets, only over the steps before the window's
    first episode end, whose return the objective credits (later ones have no gradient because they are not counted,
    not because the return ignores them)."""
    loc = torch.tensor([[[[1.5, -0.2]], [[-3.0, 0.9]], [[0.4, 2.0]]]], requires_grad=True)  # [env, time, agent, d]
    done = torch.tensor([[[True], [False], [False]]])  # the episode ends at the window's first step
    action = loc.clamp(-1.0, 1.0)
    window = TensorDict({"agents": {"loc": loc, "action": action}, "next": {"done": done}}, batch_size=[1, 3])
    models = dict.fromkeys(("world_model", "reward_model"), TensorDictModule(torch.nn.Identity(), ["x"], ["y"]))
    loss = SHACActorLoss(open_loop_actor(torch.zeros(3, 1, 1, 2)), quadratic_critic(1.0), action_bound_coef=0,
                         action_mean_coef=0.5, action_mean_relative=True, action_mean_gate=1.5,
                         **(models if world_model else {}))  # fmt: skip
    loss.set_keys(loc=("agents", "loc"), action=("agents", "action"))
    weights = torch.tensor([[[[0.2, -0.1]], [[0.0, 0.3]], [[0.05, -0.6]]]])
    mean_gradient, action_gradient = loss.return_gradients(window, (weights * action).sum())
    clamped = loc.detach().abs() > 1
    torch.testing.assert_close(action_gradient, 6 * weights)  # M = 6: |h| = 1.2 0.6 | 0 1.8 | 0.3 3.6
    torch.testing.assert_close(mean_gradient, 6 * weights * ~clamped)  # |g| = 0 0.6 | 0 1.8 | 0.3 0: ḡ = 0.45
    weight = loss.action_mean_weight(mean_gradient)
    torch.testing.assert_close(weight, torch.tensor(0.5 * 0.45))
    mask = loss.action_mean_mask(window, action_gradient)  # |h| < 0.675
    expected = torch.tensor([[[[False, True]], [[True, False]], [[True, False]]]])
    if world_model:
        expected[:, 1:] = False
    assert torch.equal(mask, expected)
    penalty = loss.action_mean_penalty(window, weight, mask)
    torch.testing.assert_close(penalty, 0.5 * 0.45 * (loc.detach().pow(2) * expected).sum() / 6)
    penalty.backward()
    torch.testing.assert_close(loc.grad, 0.5 * 0.45 * 2 * loc.detach() * expected / 6)
    for absent in (window.exclude(("agents", "action")), window.copy().set(("agents", "action"), action.detach())):
        with pytest.raises(ValueError, match="set_keys\\(action=...\\) to the reparameterised action"):
            loss.return_gradients(absent, (weights * action).sum())  # not silently ungated
    loss.action_mean_gate = 0.0
    assert loss.return_gradients(window, (weights * action).sum())[1] is None  # no gate: no action gradient, no mask
    assert loss.action_mean_mask(window, action_gradient) is None
    with pytest.raises(ValueError, match="action_mean_relative=True"):
        SHACActorLoss(open_loop_actor(torch.zeros(1, 1, 1, 1)), quadratic_critic(1.0), action_bound_coef=0,
                      action_mean_coef=1.0, action_mean_gate=0.1)  # fmt: skip


def test_control_cost_alone_moves_actions_the_return_does_not():
    # An agent pressed into a wall the simulator clamps it at: its actions move neither the rewards nor the
    # bootstrap, so the window's gradient is zero and the control cost's, 2 c a / numel, is all the actor gets.
    window, actor, _, actions = point_mass_window()
    window.set(("next", "agents", "reward"), window.get(("next", "agents", "reward")).detach())
    loss = SHACActorLoss(actor, quadratic_critic(K_CRITIC), gamma=GAMMA, action_bound_coef=0, value_gradient=0.0,
                         action_mean_coef=0.3)  # fmt: skip
    loss.set_keys(**MULTI_AGENT_KEYS, loc=("agents", "loc"))
    losses = loss(window)
    (losses["loss_actor"] + losses["loss_action_mean"]).backward()
    torch.testing.assert_close(actor.module.actions.grad, 2 * 0.3 * actions / actions.numel())


def test_actor_loss_refuses_a_window_without_graph():
    start = torch.randn(2, 1, 2)
    window = WindowCollector(
        make_point_mass_env(start, [0, 0], 100), open_loop_actor(torch.zeros(3, 2, 1, 2)), window_length=3, graph="none"
    ).rollout()
    loss = SHACActorLoss(open_loop_actor(torch.zeros(3, 2, 1, 2)), quadratic_critic(1.0), action_bound_coef=0)
    loss.set_keys(**MULTI_AGENT_KEYS)
    with pytest.raises(RuntimeError, match="carries no autograd graph"):
        loss(window)


def test_actor_loss_of_a_window_its_actions_do_not_move_is_zero_gradient_not_an_error():
    # As a window without contact on wheel with value_gradient=0: the policy's output carries the graph, the rewards
    # and the (stopped) bootstrap do not depend on it. The exact gradient is zero; the step must not fail.
    window, actor, start, actions = point_mass_window()
    window.set(("next", "agents", "reward"), window.get(("next", "agents", "reward")).detach())
    loss = SHACActorLoss(actor, quadratic_critic(K_CRITIC), gamma=GAMMA, action_bound_coef=0, value_gradient=0.0)
    loss.set_keys(**MULTI_AGENT_KEYS, loc=("agents", "loc"))
    loss_actor = loss(window)["loss_actor"]
    loss_actor.backward()
    objective, _ = closed_form_window(start, actions, SEGMENTS, GAMMA, K_CRITIC, value_gradient=0.0)
    torch.testing.assert_close(loss_actor, -objective / loss_normaliser(actions))
    torch.testing.assert_close(actor.module.actions.grad, torch.zeros_like(actions))


def test_actor_loss_needs_the_action_box_for_the_penalty():
    with pytest.raises(ValueError, match="action_low and action_high"):
        SHACActorLoss(open_loop_actor(torch.zeros(1, 1, 1, 1)), quadratic_critic(1.0))


def hand_td_lambda(reward, next_value, done, terminated, gamma, lmbda):
    """G_t = r_t + γ[(1-λ)V'_t + λG_{t+1}], and G_t = r_t + γ(1-term_t)V'_t at episode or window ends."""
    horizon = reward.shape[1]
    targets = torch.zeros_like(reward)
    following = torch.zeros_like(reward[:, 0])
    for t in reversed(range(horizon)):
        bootstrap = (~terminated[:, t]).float() * next_value[:, t]
        if t == horizon - 1:
            following = reward[:, t] + gamma * bootstrap
        else:
            cont = reward[:, t] + gamma * ((1 - lmbda) * bootstrap + lmbda * following)
            end = reward[:, t] + gamma * bootstrap
            following = torch.where(done[:, t], end, cont)
        targets[:, t] = following
    return targets


def linear_critic() -> TensorDictModule:
    critic = torch.nn.Linear(1, 1)
    with torch.no_grad():
        critic.weight.fill_(1.0)
        critic.bias.zero_()
    return TensorDictModule(critic, in_keys=[("agents", "observation")], out_keys=[("agents", "state_value")])


def random_window(num_envs=4, horizon=7, n_agents=3):
    torch.manual_seed(2)
    terminated = torch.zeros(num_envs, horizon, 1, dtype=torch.bool)
    truncated = torch.zeros_like(terminated)
    terminated[0, 2] = terminated[1, 6] = terminated[3, 0] = True
    truncated[0, 4] = truncated[2, 3] = True
    shape = (num_envs, horizon, n_agents, 1)
    return TensorDict(
        {
            "agents": {"observation": torch.randn(shape)},
            "next": {
                "agents": {"observation": torch.randn(shape), "reward": torch.randn(shape)},
                "terminated": terminated,
                "truncated": truncated,
                "done": terminated | truncated,
            },
        },
        batch_size=[num_envs, horizon],
    )


def test_td_lambda_targets_match_hand_recursion_with_terminations_and_truncations():
    window = random_window()
    loss = TDLambdaValueLoss(linear_critic(), gamma=0.97, lmbda=0.9)
    loss.set_keys(**MULTI_AGENT_KEYS)
    targets = loss.value_targets(window)
    reward = window["next", "agents", "reward"]
    expand = lambda flag: flag.unsqueeze(-2).expand_as(reward)  # noqa: E731
    expected = hand_td_lambda(
        reward,
        window["next", "agents", "observation"],  # V'(s') = s' for the unit linear critic
        expand(window["next", "done"]),
        expand(window["next", "terminated"]),
        0.97,
        0.9,
    )
    assert targets.shape == reward.shape
    torch.testing.assert_close(targets, expected)


def test_value_loss_regresses_onto_targets_and_trains_on_flattened_minibatches():
    window = random_window()
    loss = TDLambdaValueLoss(linear_critic(), gamma=0.97, lmbda=0.9)
    loss.set_keys(value_target=("agents", "value_target"), **MULTI_AGENT_KEYS)
    targets = loss.value_targets(window)
    # With a named time dimension the loss computes the same targets itself.
    named = window.clone().refine_names(None, "time")
    window["agents", "value_target"] = targets
    flat = window.reshape(-1)
    value = flat["agents", "observation"]  # unit linear critic
    expected = (value - targets.reshape(flat["agents", "observation"].shape)).pow(2).mean()
    torch.testing.assert_close(loss(flat)["loss_value"], expected)
    torch.testing.assert_close(loss(named)["loss_value"], expected)
    del flat["agents", "value_target"]
    with pytest.raises(KeyError, match="before flattening"):
        loss(flat)


def test_target_critic_is_used_for_targets_and_follows_soft_updates():
    window = random_window()
    loss = TDLambdaValueLoss(linear_critic(), gamma=0.97, lmbda=0.9, use_target_network=True)
    loss.set_keys(**MULTI_AGENT_KEYS)
    updater = SoftUpdate(loss, tau=0.5)
    before = loss.value_targets(window)
    with torch.no_grad():
        loss.value_network_params["module", "weight"].fill_(3.0)
    torch.testing.assert_close(loss.value_targets(window), before)
    updater.step()
    assert loss.target_value_network_params["module", "weight"].item() == pytest.approx(2.0)
    assert not torch.allclose(loss.value_targets(window), before)
