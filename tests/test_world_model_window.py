"""The world models' window adapters: the one-pass model's, and the transition model spliced along the rollout."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from torchrl_shacpp.modules import (
    AxisAttentionWorldModel,
    PeriodicFeatures,
    TransitionWorldModel,
    spliced_world_model,
    transition_world_model,
    window_world_model,
)
from torchrl_shacpp.objectives import TransitionModelLoss
from torchrl_shacpp.envs import make_vmas_env


def test_window_world_model_splits_the_one_pass_prediction_and_reads_the_first_observation_only():
    torch.manual_seed(0)
    num_envs, horizon, n_agents, obs_dim, action_dim = 3, 5, 2, 4, 2
    model = AxisAttentionWorldModel(obs_dim, action_dim, horizon, num_layers=2)
    module = window_world_model(model)
    observation = torch.randn(num_envs, horizon, n_agents, obs_dim)
    action = torch.randn(num_envs, horizon, n_agents, action_dim, requires_grad=True)
    window = TensorDict(
        {"agents": {"observation": observation, "action": action}}, batch_size=[num_envs, horizon]
    ).refine_names(None, "time")

    predicted = module(window.copy())
    expected = model(observation[:, 0], action)  # [B, h + 1, n, o]
    torch.testing.assert_close(predicted["agents", "observation"], expected[:, :-1])
    torch.testing.assert_close(predicted["next", "agents", "observation"], expected[:, 1:])
    assert predicted.batch_size == window.batch_size
    # Later observations are not inputs; the actions carry the gradient.
    window["agents", "observation"][:, 1:] = torch.randn(num_envs, horizon - 1, n_agents, obs_dim)
    torch.testing.assert_close(module(window.copy())["next", "agents", "observation"], expected[:, 1:])
    predicted["next", "agents", "observation"].sum().backward()
    assert action.grad is not None and action.grad.abs().sum() > 0


class _LinearTransition(torch.nn.Module):
    """o' = C o + B a for every agent: Jacobians known in closed form."""

    def __init__(self, obs_dim: int, action_dim: int) -> None:
        super().__init__()
        self.C = torch.nn.Parameter(torch.eye(obs_dim) + 0.1 * torch.randn(obs_dim, obs_dim))
        self.B = torch.nn.Parameter(torch.randn(obs_dim, action_dim))

    def forward(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return observation @ self.C.T + action @ self.B.T


def _window(num_envs: int, horizon: int, n_agents: int, obs_dim: int, action_dim: int, done_at: int | None):
    observation = torch.randn(num_envs, horizon, n_agents, obs_dim)
    next_observation = torch.randn(num_envs, horizon, n_agents, obs_dim)
    next_observation[:, :-1] = observation[:, 1:]  # a real rollout: o'_t = o_{t+1}, except across a reset
    done = torch.zeros(num_envs, horizon, 1, dtype=torch.bool)
    if done_at is not None:
        done[:, done_at] = True
        next_observation[:, done_at] = torch.randn(num_envs, n_agents, obs_dim)  # the pre-reset observation
    action = torch.randn(num_envs, horizon, n_agents, action_dim, requires_grad=True)
    window = TensorDict(
        {"agents": {"observation": observation, "action": action},
         "next": {"agents": {"observation": next_observation}, "done": done}},
        batch_size=[num_envs, horizon],
    ).refine_names(None, "time")  # fmt: skip
    return window, action


@pytest.mark.parametrize("done_at", [None, 2])
def test_spliced_window_has_the_real_values_and_the_chained_model_jacobians(done_at):
    """õ = o in value; ∂õ'_t/∂a_k = C^{t-k} B for k <= t within an episode (closed form of a linear model), 0 across
    the reset."""
    torch.manual_seed(0)
    num_envs, horizon, n_agents, obs_dim, action_dim = 2, 5, 3, 4, 2
    transition = _LinearTransition(obs_dim, action_dim)
    module = spliced_world_model(transition)
    window, action = _window(num_envs, horizon, n_agents, obs_dim, action_dim, done_at)

    spliced = module(window.copy())
    torch.testing.assert_close(spliced["agents", "observation"], window["agents", "observation"])
    torch.testing.assert_close(spliced["next", "agents", "observation"], window["next", "agents", "observation"])

    weights = torch.randn(horizon, obs_dim)
    (spliced["next", "agents", "observation"] * weights[:, None, :]).sum().backward()
    C, B = transition.C.detach(), transition.B.detach()
    expected = torch.zeros(horizon, action_dim)
    for k in range(horizon):
        episode_end = horizon - 1 if done_at is None or k > done_at else done_at
        for t in range(k, episode_end + 1):
            expected[k] += weights[t] @ torch.linalg.matrix_power(C, t - k) @ B
    torch.testing.assert_close(action.grad, expected[None, :, None, :].expand_as(action.grad))
    assert transition.C.grad is not None  # the model's own parameters are reachable (the actor loss holds them out)


@pytest.mark.parametrize("growth", [1.0, 1.5, 3.0])
def test_spliced_window_bounds_the_state_gradients_growth_per_step(growth: float):
    """C = 2 I doubles the state's gradient at each step back; with ``max_gradient_growth`` ρ < 2 it grows by ρ
    instead: a loss on the last observation gives ∂/∂a_k = ρ^{T-1-k} Bᵀw (closed form), and ρ = 3 changes nothing.
    The loss's gradient each step gets directly (here on the first prediction too) is not bounded."""
    torch.manual_seed(0)
    num_envs, horizon, n_agents, obs_dim, action_dim = 2, 5, 3, 4, 2
    transition = _LinearTransition(obs_dim, action_dim)
    with torch.no_grad():
        transition.C.copy_(2 * torch.eye(obs_dim))
    module = spliced_world_model(transition, max_gradient_growth=growth)
    window, action = _window(num_envs, horizon, n_agents, obs_dim, action_dim, None)
    last, first = torch.randn(obs_dim), torch.randn(obs_dim)
    spliced = module(window.copy())["next", "agents", "observation"]
    (spliced[:, -1] @ last + spliced[:, 0] @ first).sum().backward()
    B = transition.B.detach()
    rate = min(growth, 2.0)
    expected = torch.stack([rate ** (horizon - 1 - k) * last @ B for k in range(horizon)])
    expected[0] += first @ B
    torch.testing.assert_close(action.grad, expected[None, :, None, :].expand_as(action.grad))
    with pytest.raises(ValueError, match="max_gradient_growth=0 must be a finite number > 0"):
        spliced_world_model(transition, max_gradient_growth=0)


@pytest.mark.parametrize("detached", [[1, 3], "integer"])
def test_spliced_window_gives_detached_features_no_gradient(detached):
    """Features 1 and 3 detached (named, or found as the integer-valued ones: flags): the values stay the real ones
    and every step's Jacobians lose those rows, ∂õ'_t/∂a_k = (M C)^{t-k} M B with M the identity less those features
    (closed form of a linear model)."""
    torch.manual_seed(0)
    num_envs, horizon, n_agents, obs_dim, action_dim = 2, 5, 3, 4, 2
    transition = _LinearTransition(obs_dim, action_dim)
    module = spliced_world_model(transition, detached_features=detached)
    window, action = _window(num_envs, horizon, n_agents, obs_dim, action_dim, None)
    flags = [1, 3]
    for key in (("agents", "observation"), ("next", "agents", "observation")):
        window[key][..., flags] = torch.randint(0, 2, (num_envs, horizon, n_agents, len(flags))).float()

    spliced = module(window.copy())
    torch.testing.assert_close(spliced["next", "agents", "observation"], window["next", "agents", "observation"])
    weights = torch.randn(horizon, obs_dim)
    (spliced["next", "agents", "observation"] * weights[:, None, :]).sum().backward()
    kept = torch.ones(obs_dim)
    kept[flags] = 0
    M, C, B = torch.diag(kept), transition.C.detach(), transition.B.detach()
    expected = torch.zeros(horizon, action_dim)
    for k in range(horizon):
        for t in range(k, horizon):
            expected[k] += weights[t] @ torch.linalg.matrix_power(M @ C, t - k) @ M @ B
    torch.testing.assert_close(action.grad, expected[None, :, None, :].expand_as(action.grad))


def test_spliced_window_cuts_the_agent_steps_its_model_mispredicts():
    """A linear model that predicts every transition of the window but one agent-step's (env 0, agent 1, t = 2),
    whose next observation is off by far more than ``trusted_error_ratio`` times the median error: the values stay
    the real ones, that agent's chain through step 2 carries no gradient, ∂õ'_t/∂a_k = C^{t-k} B only where k > 2
    or t < 2, and every other agent-step keeps the closed form. A residual of one whole period of a periodic
    feature (env 1, agent 0, the last step) is no error. Without the ratio nothing is cut."""
    torch.manual_seed(0)
    num_envs, horizon, n_agents, obs_dim, action_dim = 2, 5, 3, 4, 2
    transition = _LinearTransition(obs_dim, action_dim)
    transition.periodic = PeriodicFeatures([[0, 2 * torch.pi]])
    window, action = _window(num_envs, horizon, n_agents, obs_dim, action_dim, None)
    observation, next_observation = window["agents", "observation"], window["next", "agents", "observation"]
    with torch.no_grad():
        for t in range(horizon):
            next_observation[:, t] = transition(observation[:, t], action[:, t]) + 1e-3 * torch.randn_like(
                observation[:, t]
            )
            if t == 2:
                next_observation[0, t, 1] += 1.0
            if t + 1 < horizon:
                observation[:, t + 1] = next_observation[:, t]
        next_observation[1, -1, 0, 0] += 2 * torch.pi
    weights = torch.randn(horizon, obs_dim)
    C, B = transition.C.detach(), transition.B.detach()
    full = torch.zeros(horizon, action_dim)
    cut = torch.zeros(horizon, action_dim)
    for k in range(horizon):
        for t in range(k, horizon):
            full[k] += weights[t] @ torch.linalg.matrix_power(C, t - k) @ B
            if not k <= 2 <= t:
                cut[k] += weights[t] @ torch.linalg.matrix_power(C, t - k) @ B

    for ratio, cut_at in ((100.0, (0, slice(None), 1)), (None, None)):
        action.grad = None
        module = spliced_world_model(transition, trusted_error_ratio=ratio)
        spliced = module(window.copy())["next", "agents", "observation"]
        torch.testing.assert_close(spliced, next_observation)
        (spliced * weights[:, None, :]).sum().backward()
        expected = full[None, :, None, :].expand_as(action).clone()
        if cut_at is not None:
            expected[cut_at] = cut
        torch.testing.assert_close(action.grad, expected)
    with pytest.raises(ValueError, match="trusted_error_ratio=0 must be a finite number > 0"):
        spliced_world_model(transition, trusted_error_ratio=0)


def test_integer_features_of_the_papers_dispersion_are_its_eaten_flags():
    """On a rollout of the paper's dispersion (3 agents, 3 foods: own position and velocity, then per food its offset
    and eaten flag), ``"integer"`` detaches exactly the 3 eaten flags: no other feature's prediction loses its
    gradient."""
    torch.manual_seed(0)
    env = make_vmas_env("dispersion", num_envs=8, n_agents=3)
    rollout = env.rollout(12, break_when_any_done=False)
    window = rollout.select(("agents", "observation"), ("next", "agents", "observation"), ("next", "done"))
    action = rollout.get(("agents", "action")).clone().requires_grad_()
    window.set(("agents", "action"), action)
    obs_dim, action_dim = window.get(("agents", "observation")).shape[-1], action.shape[-1]
    module = spliced_world_model(_LinearTransition(obs_dim, action_dim), detached_features="integer")
    spliced = module(window.copy()).get(("next", "agents", "observation"))
    reached = []
    for feature in range(obs_dim):
        (gradient,) = torch.autograd.grad(spliced[..., feature].sum(), action, retain_graph=True)
        reached.append(bool(gradient.abs().sum() > 0))
    assert obs_dim == 13 and [f for f in range(obs_dim) if not reached[f]] == [6, 9, 12]


def test_spliced_window_refuses_detached_features_it_cannot_use():
    transition = _LinearTransition(4, 2)
    with pytest.raises(ValueError, match="detached_features='flags' must be a list of integers.*'integer' or null"):
        spliced_world_model(transition, detached_features="flags")
    with pytest.raises(ValueError, match=r"detached_features\[0\]=-1 must be an integer >= 0"):
        spliced_world_model(transition, detached_features=[-1])
    window, _ = _window(2, 3, 1, 4, 2, None)
    with pytest.raises(ValueError, match=r"names a feature beyond the observation's 4: give indices below 4"):
        spliced_world_model(transition, detached_features=[4])(window)


def test_transition_world_model_starts_at_no_change_and_learns_a_known_linear_jacobian():
    """o' = o + A a + 0.1 o (per agent) from random transitions: the learned J_a = A and J_o = 1.1 I (cosine > 0.99,
    size within 5%) — the sensitivity SHAC++ uses, not only the values."""
    torch.manual_seed(0)
    n_agents, obs_dim, action_dim = 3, 4, 2
    A = torch.randn(obs_dim, action_dim) * 0.3
    model = TransitionWorldModel(obs_dim, action_dim, num_layers=2)
    observation, action = torch.randn(8, n_agents, obs_dim), torch.rand(8, n_agents, action_dim) * 2 - 1
    torch.testing.assert_close(model(observation, action), observation)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(600):
        observation, action = torch.randn(256, n_agents, obs_dim), torch.rand(256, n_agents, action_dim) * 2 - 1
        target = 1.1 * observation + action @ A.T
        loss = (model(observation, action) - target).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    observation = torch.randn(64, n_agents, obs_dim)
    action = (torch.rand(64, n_agents, action_dim) * 2 - 1).requires_grad_()
    predicted = model(observation, action)
    by_model = torch.stack([torch.autograd.grad(predicted[..., f].sum(), action, retain_graph=True)[0]
                            for f in range(obs_dim)])  # [f, batch, agent, a]
    by_truth = A[:, None, None, :].expand_as(by_model)
    cos = torch.nn.functional.cosine_similarity(by_model.flatten(), by_truth.flatten(), dim=0)
    assert cos > 0.99 and abs(by_model.norm() / by_truth.norm() - 1) < 0.05


def test_periodic_features_encode_one_configuration_as_one_input_and_wrap_a_change_across_the_cut():
    periodic = PeriodicFeatures([[1, torch.pi]])
    observation = torch.tensor([[0.5, 0.01, -2.0], [0.5, torch.pi - 0.01, -2.0]])
    encoded = periodic.encode(observation)
    torch.testing.assert_close(encoded[:, [0, 2]], observation[:, [0, 2]])
    # cos 2θ, sin 2θ: θ and θ + π are one input, and the two sides of the cut (tilts of ±0.01) are 0.04 apart
    torch.testing.assert_close(periodic.encode(observation + torch.tensor([0.0, torch.pi, 0.0])), encoded)
    torch.testing.assert_close((encoded[0] - encoded[1]).norm(), torch.tensor(2 * 0.02), atol=1e-4, rtol=0)
    torch.testing.assert_close(encoded[:, 1].pow(2) + encoded[:, 3].pow(2), torch.ones(2))
    # A tilt across level: VMAS's feature jumps from 0.01 to π - 0.01; the change is -0.02. Others stay as they are.
    difference = torch.tensor([0.7, torch.pi - 0.02, 4.0])
    torch.testing.assert_close(periodic.wrap(difference), torch.tensor([0.7, -0.02, 4.0]))
    torch.testing.assert_close(periodic.wrap(-difference), torch.tensor([-0.7, 0.02, -4.0]))
    assert PeriodicFeatures([]).encode(observation) is observation


@pytest.mark.parametrize(
    "features, message",
    [
        ([[1]], r"periodic features are \[index, period\] pairs"),
        ([[-1, 3.0]], "index=-1 must be an integer >= 0"),
        ([[1, 0.0]], "period=0.0 must be a finite number > 0"),
        ([[1, 3.0], [1, 2.0]], "name a feature twice"),
    ],
)
def test_periodic_features_refuse_what_is_not_index_period_pairs(features, message):
    with pytest.raises(ValueError, match=message):
        PeriodicFeatures(features)
    with pytest.raises(ValueError, match="name a feature beyond the observation's 3: give indices below 3"):
        TransitionWorldModel(3, 1, periodic=PeriodicFeatures([[3, 1.0]]))


def test_transition_model_loss_regresses_a_periodic_feature_onto_its_change_not_its_jump():
    """The residual of a prediction that is a whole period away is zero; of one across the cut, the small change."""
    periodic = PeriodicFeatures([[0, torch.pi]])
    predicted = torch.tensor([[[0.01 - 0.03, 1.0]]])  # [batch, agent, feature]: the model tilts the line to -0.02
    batch = TensorDict(
        {"observation": predicted, "action": torch.zeros(1, 1, 1), ("next", "observation"): torch.tensor([[[torch.pi - 0.01, 1.5]]])},
        batch_size=[1],
    )
    model = transition_world_model(
        lambda observation, action: observation, observation_key="observation", action_key="action",
        predicted_observation_key="predicted_observation",
    )
    plain, wrapped = TransitionModelLoss(model), TransitionModelLoss(model, periodic=periodic)
    torch.testing.assert_close(wrapped(batch)["loss_world"], torch.tensor((0.01**2 + 0.5**2) / 2))
    torch.testing.assert_close(plain(batch)["loss_world"], torch.tensor(((torch.pi - 0.01 - -0.02) ** 2 + 0.5**2) / 2))


def test_transition_world_model_with_a_periodic_feature_learns_the_rotations_action_jacobian_at_the_cut():
    """θ' = (θ + 0.3 a_0 + 0.1 x) mod π, x' = x + 0.2 a_1, from random transitions through TransitionModelLoss: with
    θ periodic the learned J_a matches [[0.3, 0], [0, 0.2]] on transitions within 0.05 of the cut (cosine > 0.99,
    size within 5%), where the data's changes of θ jump by π."""
    torch.manual_seed(0)
    jacobian = torch.tensor([[0.3, 0.0], [0.0, 0.2]])

    def transitions(count: int, near_cut: bool = False) -> TensorDict:
        theta = torch.rand(count, 2, 1) * (0.1 if near_cut else torch.pi)
        theta = torch.where(torch.rand_like(theta) < 0.5, theta * 0.5, torch.pi - theta * 0.5) if near_cut else theta
        x, action = torch.randn(count, 2, 1), torch.rand(count, 2, 2) * 2 - 1
        next_theta = torch.remainder(theta + 0.3 * action[..., :1] + 0.1 * x, torch.pi)
        observation = torch.cat([theta, x], -1)
        next_observation = torch.cat([next_theta, x + 0.2 * action[..., 1:]], -1)
        return TensorDict({"observation": observation, "action": action, ("next", "observation"): next_observation}, [count])

    periodic = PeriodicFeatures([[0, torch.pi]])
    model = TransitionWorldModel(2, 2, num_layers=2, periodic=periodic)
    loss = TransitionModelLoss(
        transition_world_model(
            model, observation_key="observation", action_key="action", predicted_observation_key="predicted_observation"
        ),
        periodic=periodic,
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(600):
        value = loss(transitions(256))["loss_world"]
        optimiser.zero_grad()
        value.backward()
        optimiser.step()
    batch = transitions(64, near_cut=True)
    action = batch["action"].requires_grad_()
    predicted = model(batch["observation"], action)
    by_model = torch.stack([torch.autograd.grad(predicted[..., f].sum(), action, retain_graph=True)[0] for f in range(2)])
    by_truth = jacobian[:, None, None, :].expand_as(by_model)
    cos = torch.nn.functional.cosine_similarity(by_model.flatten(), by_truth.flatten(), dim=0)
    assert cos > 0.99 and abs(by_model.norm() / by_truth.norm() - 1) < 0.05


def test_periodic_features_are_configuration_not_state_so_earlier_checkpoints_load():
    plain = TransitionWorldModel(3, 1)
    assert not [key for key in plain.state_dict() if "periodic" in key]
    periodic = TransitionWorldModel(3, 1, periodic=PeriodicFeatures([[2, 1.0]]))
    assert periodic.state_dict().keys() == plain.state_dict().keys()  # the sine widens the input embedding only
