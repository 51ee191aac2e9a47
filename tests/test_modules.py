"""Tests of torchrl_shacpp.modules: exactness of the axis attention, locality, equivariance, and fitting toys."""

from __future__ import annotations

import functools
import itertools

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.data import Bounded
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_shacpp.modules import (
    AgentSetTransformer,
    AxisAttentionWorldModel,
    AxisSelfAttention,
    RewardModel,
    SlotSet,
    SlotSumReward,
    TransformerRewardModel,
    TransitionWorldModel,
    axis_attention_mask,
    gaussian_actor,
)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    # These models are tiny: on a shared, busy CPU, intra-op threads cost far more in synchronisation than they
    # gain (measured 7x slower fitting with 2 threads under load).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# (horizon h, n_agents, heads); the attention sees T = h + 1 steps.
SHAPES = [(1, 1, 1), (1, 4, 2), (5, 1, 1), (4, 3, 2), (6, 5, 4)]


def _values_and_grads(module: nn.Module, inputs: tuple[torch.Tensor, ...], weight: torch.Tensor):
    """Output, and gradients of a random linear functional of it w.r.t. the inputs and every parameter."""
    inputs = tuple(x.detach().clone().requires_grad_(True) for x in inputs)
    out = module(*inputs)
    grads = torch.autograd.grad((out * weight).sum(), [*inputs, *module.parameters()])
    return out.detach(), grads


def _assert_same(a, b) -> None:
    (out_a, grads_a), (out_b, grads_b) = a, b
    torch.testing.assert_close(out_a, out_b, rtol=1e-10, atol=1e-12)
    assert len(grads_a) == len(grads_b)
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-12)


def test_axis_mask_matches_definition():
    steps, n = 4, 3
    mask = axis_attention_mask(steps, n)
    for (i, j), (t, k) in itertools.product(itertools.product(range(steps), range(n)), repeat=2):
        assert mask[i * n + j, t * n + k] == (t == i or (k == j and t <= i))


@pytest.mark.parametrize("h, n, heads", SHAPES)
def test_axis_attention_equals_dense_reference(h, n, heads):
    torch.manual_seed(0)
    fast = AxisSelfAttention(8, heads).double()
    dense = AxisSelfAttention(8, heads, dense=True).double()
    dense.load_state_dict(fast.state_dict())
    x = torch.randn(2, h + 1, n, 8, dtype=torch.float64)
    weight = torch.randn(2, h + 1, n, 8, dtype=torch.float64)
    _assert_same(_values_and_grads(fast, (x,), weight), _values_and_grads(dense, (x,), weight))


@pytest.mark.parametrize("h, n, heads", SHAPES)
def test_world_model_equals_dense_reference(h, n, heads):
    torch.manual_seed(0)
    make = functools.partial(AxisAttentionWorldModel, 3, 2, h, hidden_size=8, feedforward_size=16, num_heads=heads)
    fast, dense = make().double(), make(dense_attention=True).double()
    dense.load_state_dict(fast.state_dict())
    obs = torch.randn(2, n, 3, dtype=torch.float64)
    actions = torch.randn(2, h, n, 2, dtype=torch.float64)
    weight = torch.randn(2, h + 1, n, 3, dtype=torch.float64)
    _assert_same(_values_and_grads(fast, (obs, actions), weight), _values_and_grads(dense, (obs, actions), weight))


@pytest.mark.parametrize("n", [1, 3])
def test_transition_model_dense_default_equals_the_axis_path(n):
    """The transition model's default (dense masked, fused attention) is the axis path's function and gradients."""
    torch.manual_seed(0)
    make = functools.partial(TransitionWorldModel, 3, 2, hidden_size=8, feedforward_size=16, num_heads=2)
    dense, axis = make().double(), make(dense_attention=False).double()
    with torch.no_grad():  # the zero-initialised head would hide the attention from both outputs and gradients
        dense.network.head.weight.normal_()
    axis.load_state_dict(dense.state_dict())
    observation = torch.randn(4, n, 3, dtype=torch.float64)
    action = torch.randn(4, n, 2, dtype=torch.float64)
    weight = torch.randn(4, n, 3, dtype=torch.float64)
    inputs = (observation, action)
    _assert_same(_values_and_grads(dense, inputs, weight), _values_and_grads(axis, inputs, weight))


@pytest.mark.parametrize("chunks", [1, 3])
@pytest.mark.parametrize("dense", [False, True])
def test_checkpointed_world_model_equals_the_plain_one(chunks, dense):
    """Layer checkpointing over batch slices changes neither the predictions nor any gradient."""
    torch.manual_seed(0)
    make = functools.partial(AxisAttentionWorldModel, 3, 2, 4, hidden_size=8, feedforward_size=16, num_heads=2)
    plain, checkpointed = make(dense_attention=dense).double(), make(dense_attention=dense, checkpoint_chunks=chunks)
    checkpointed.double().load_state_dict(plain.state_dict())
    obs = torch.randn(5, 2, 3, 3, dtype=torch.float64)  # two batch dims, 5 x 2 windows
    actions = torch.randn(5, 2, 4, 3, 2, dtype=torch.float64)
    weight = torch.randn(5, 2, 5, 3, 3, dtype=torch.float64)
    _assert_same(_values_and_grads(plain, (obs, actions), weight), _values_and_grads(checkpointed, (obs, actions), weight))


def test_checkpointed_world_model_keeps_held_out_parameters_held_out():
    """Under ``to_module`` with detached parameters (the actor loss's held-out model), the recomputation in backward
    uses those tensors: gradients reach the inputs, equal to the plain model's, and never the real parameters."""
    torch.manual_seed(0)
    model = AxisAttentionWorldModel(3, 2, 4, hidden_size=8, feedforward_size=16, checkpoint_chunks=2)
    obs, actions = torch.randn(4, 2, 3), torch.randn(4, 4, 2, 2, requires_grad=True)
    params = TensorDict.from_module(model)
    with params.detach().to_module(model):
        out = model(obs, actions)
    (grad,) = torch.autograd.grad(out.pow(2).sum(), actions)
    model.checkpoint_chunks = 0
    (expected,) = torch.autograd.grad(model(obs, actions).pow(2).sum(), actions)
    torch.testing.assert_close(grad, expected)
    assert all(p.grad is None for p in model.parameters())


def _changed_outputs(module: nn.Module, perturb, *inputs: torch.Tensor) -> torch.Tensor:
    """Boolean ``[T, n]``: which (step, agent) outputs change when ``perturb`` edits the inputs in place."""
    with torch.no_grad():
        before = module(*inputs)
        perturb(*inputs)
        return (module(*inputs) - before).abs().amax(-1)[0] > 1e-9


def test_axis_attention_locality():
    """Output (i, j) changes iff the perturbed token (t, k) is in its allowed set: t == i, or k == j and t <= i."""
    torch.manual_seed(0)
    steps, n = 4, 3
    attention = AxisSelfAttention(8, 2).double()
    mask = axis_attention_mask(steps, n).view(steps, n, steps, n)
    for t, k in itertools.product(range(steps), range(n)):
        x = torch.randn(1, steps, n, 8, dtype=torch.float64)

        def perturb(x, t=t, k=k):
            x[:, t, k] += 1.0

        changed = _changed_outputs(attention, perturb, x)
        assert torch.equal(changed, mask[:, :, t, k]), (t, k)


@pytest.mark.parametrize("num_layers", [1, 3])
def test_world_model_locality(num_layers):
    """Perturb agent k's action a_{t-1} (token (t, k)). One layer: prediction (i, j) changes iff the token is in
    the axis mask's allowed set. Three layers: iff t <= i (any agent; the future never leaks)."""
    torch.manual_seed(0)
    h, n = 4, 3
    model = AxisAttentionWorldModel(3, 2, h, hidden_size=8, feedforward_size=16, num_layers=num_layers).double()
    mask = axis_attention_mask(h + 1, n).view(h + 1, n, h + 1, n)
    for t, k in itertools.product(range(1, h + 1), range(n)):
        obs = torch.randn(1, n, 3, dtype=torch.float64)
        actions = torch.randn(1, h, n, 2, dtype=torch.float64)

        def perturb(obs, actions, t=t, k=k):
            actions[:, t - 1, k] += 1.0

        changed = _changed_outputs(model, perturb, obs, actions)
        if num_layers == 1:
            expected = mask[:, :, t, k]
        else:
            expected = (torch.arange(h + 1) >= t)[:, None].expand(h + 1, n)
        assert torch.equal(changed, expected), (t, k)


def test_world_model_shorter_horizon_and_limits():
    torch.manual_seed(0)
    model = AxisAttentionWorldModel(3, 2, horizon=6).eval()
    obs, actions = torch.randn(4, 2, 3), torch.randn(4, 6, 2, 2)
    full = model(obs, actions)
    assert full.shape == (4, 7, 2, 3)
    # The attention is causal in time, so a prefix of the actions gives the prefix of the predictions.
    torch.testing.assert_close(model(obs, actions[:, :3]), full[:, :4])
    with pytest.raises(ValueError, match="horizon"):
        model(obs, torch.randn(4, 7, 2, 2))


def _permute_agents(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    return x[..., perm, :]


@pytest.mark.parametrize("n", [1, 4])
def test_agent_set_transformer_equivariance(n):
    torch.manual_seed(0)
    model = AgentSetTransformer(5, 3, num_layers=2, num_heads=2).double()
    x = torch.randn(2, 3, n, 5, dtype=torch.float64)
    perm = torch.randperm(n)
    out = model(x)
    assert out.shape == (2, 3, n, 3)
    torch.testing.assert_close(model(_permute_agents(x, perm)), _permute_agents(out, perm))


def test_agent_set_transformer_head_init_scale_scales_its_initial_outputs():
    """``head_init_scale`` s: the same network as at 1 (same seed) with the output layer's weights and bias times s,
    so the initial outputs are s times as large (a policy's initial mean action near 0 at 0.01)."""
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    outputs = {}
    for scale in (1.0, 0.01):
        torch.manual_seed(0)
        outputs[scale] = AgentSetTransformer(5, 2, head_init_scale=scale).double()(x)
    torch.testing.assert_close(outputs[0.01], 0.01 * outputs[1.0])
    assert outputs[1.0].norm(dim=-1).mean() > 0.3  # O(1) at PyTorch's init: the encoder's tokens are layer-normed


def test_world_model_equivariance():
    torch.manual_seed(0)
    n = 4
    model = AxisAttentionWorldModel(3, 2, horizon=5, num_heads=2).double()
    obs, actions = torch.randn(2, n, 3, dtype=torch.float64), torch.randn(2, 5, n, 2, dtype=torch.float64)
    perm = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(
        model(_permute_agents(obs, perm), _permute_agents(actions, perm)), _permute_agents(model(obs, actions), perm)
    )


@pytest.mark.parametrize("use_next_obs", [True, False])
def test_transformer_reward_model_equivariance(use_next_obs):
    torch.manual_seed(0)
    n = 4
    model = TransformerRewardModel(3, 2, use_next_obs=use_next_obs).double()
    obs, action, next_obs = (torch.randn(5, n, d, dtype=torch.float64) for d in (3, 2, 3))
    perm = torch.tensor([3, 1, 0, 2])
    out = model(obs, action, next_obs)
    assert out.shape == (5, n, 1)
    permuted = model(*(_permute_agents(x, perm) for x in (obs, action, next_obs)))
    torch.testing.assert_close(permuted, _permute_agents(out, perm))


def test_reward_model_needs_next_obs():
    model = RewardModel(nn.Linear(RewardModel.in_features(3, 2, use_next_obs=True), 1), use_next_obs=True)
    with pytest.raises(ValueError, match="next_obs"):
        model(torch.randn(2, 3), torch.randn(2, 2))
    # Without next_obs as an input (the default), a given next_obs is ignored.
    model = RewardModel(nn.Linear(RewardModel.in_features(3, 2, use_next_obs=False), 1))
    obs, action = torch.randn(2, 3), torch.randn(2, 2)
    torch.testing.assert_close(model(obs, action), model(obs, action, torch.randn(2, 3)))


def _mlp(in_features: int) -> nn.Module:
    """A per-agent MLP on ``[*batch, n_agents, in_features]``."""
    return nn.Sequential(nn.Linear(in_features, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))


def _fit(model: nn.Module, sample, steps: int, lr: float, batch: int = 64) -> None:
    optim = torch.optim.Adam(model.parameters(), lr)
    for _ in range(steps):
        *inputs, target = sample(batch)
        loss = (model(*inputs) - target).pow(2).mean()
        optim.zero_grad()
        loss.backward()
        optim.step()


def test_world_model_fits_linear_point_mass():
    """o_{t+1} = o_t + A a_t for every agent: the predictions must beat predicting the mean (< 5% of its MSE)
    and predicting o_0 at every step (< 25%: the model uses the actions)."""
    torch.manual_seed(0)
    h, n = 6, 3
    transition = torch.tensor([[0.3, 0.1], [-0.1, 0.2]])

    def sample(batch: int):
        obs = torch.randn(batch, n, 2)
        actions = torch.rand(batch, h, n, 2) * 2 - 1
        trajectory = obs.unsqueeze(1) + torch.cat([torch.zeros(batch, 1, n, 2), (actions @ transition.T).cumsum(1)], 1)
        return obs, actions, trajectory

    model = AxisAttentionWorldModel(2, 2, h)
    _fit(model, sample, steps=150, lr=3e-3)
    obs, actions, target = sample(512)
    with torch.no_grad():
        mse = (model(obs, actions) - target).pow(2).mean()
    mean_mse = (target - target.mean(0)).pow(2).mean()
    persistence_mse = (target - obs.unsqueeze(1)).pow(2).mean()
    assert mse < 0.05 * mean_mse
    assert mse < 0.25 * persistence_mse


@pytest.mark.parametrize(
    "make_model, steps, lr",
    [
        (lambda n: TransformerRewardModel(2, 2, use_next_obs=True), 300, 3e-3),
        (lambda n: TransformerRewardModel(2, 2), 300, 3e-3),
        (lambda n: RewardModel(_mlp(RewardModel.in_features(2, 2, use_next_obs=True)), use_next_obs=True), 600, 1e-2),
    ],
    ids=["transformer-next-obs", "transformer", "mlp-next-obs"],
)
def test_reward_model_fits_known_reward(make_model, steps, lr):
    """r_j = -||o_{t+1, j}||^2 with o_{t+1} = o_t + a_t / 2: final MSE < 5% of predicting the mean."""
    torch.manual_seed(0)
    n = 3

    def sample(batch: int):
        obs, action = torch.randn(batch, n, 2), torch.rand(batch, n, 2) * 2 - 1
        next_obs = obs + 0.5 * action
        return obs, action, next_obs, -next_obs.pow(2).sum(-1, keepdim=True)

    model = make_model(n)
    _fit(model, sample, steps=steps, lr=lr, batch=128)
    *inputs, target = sample(1024)
    with torch.no_grad():
        mse = (model(*inputs) - target).pow(2).mean()
    assert mse < 0.05 * (target - target.mean()).pow(2).mean()


def _permute_slots(obs: torch.Tensor, perm: torch.Tensor, own: int, slot: int) -> torch.Tensor:
    slots = obs[..., own:].unflatten(-1, (-1, slot))[..., perm, :].flatten(-2)
    return torch.cat([obs[..., :own], slots], dim=-1)


@pytest.mark.parametrize("use_next_obs", [False, True])
def test_slot_sum_reward_is_one_function_summed_over_the_slots(use_next_obs: bool):
    """r_i = sum_k g([s_i; a_i; (s'_i;) e_ik; (e'_ik)]): the output is that sum computed slot by slot, unchanged when
    the slots are reordered (o_t's and o_{t+1}'s alike), and permuted with the agents (one g for all agents)."""
    torch.manual_seed(0)
    own, slot, k, n = 4, 3, 5, 3
    model = SlotSumReward(own, slot, 2, n, use_next_obs=use_next_obs).double()
    obs, next_obs = (torch.randn(6, n, own + k * slot, dtype=torch.float64) for _ in range(2))
    action = torch.randn(6, n, 2, dtype=torch.float64)
    out = model(obs, action, next_obs)
    assert out.shape == (6, n, 1)
    by_slot = 0
    for j in range(k):
        token = [obs[..., :own], action]
        if use_next_obs:
            token.append(next_obs[..., :own])
        token.append(obs[..., own + j * slot : own + (j + 1) * slot])
        if use_next_obs:
            token.append(next_obs[..., own + j * slot : own + (j + 1) * slot])
        by_slot = by_slot + model.slot_score(torch.cat(token, dim=-1))
    torch.testing.assert_close(out, by_slot)
    perm = torch.tensor([3, 0, 4, 1, 2])
    reordered = model(_permute_slots(obs, perm, own, slot), action, _permute_slots(next_obs, perm, own, slot))
    torch.testing.assert_close(reordered, out)
    agents = torch.tensor([2, 0, 1])
    permuted = model(*(_permute_agents(x, agents) for x in (obs, action, next_obs)))
    torch.testing.assert_close(permuted, _permute_agents(out, agents))


def test_slot_sum_reward_refuses_what_its_layout_cannot_split():
    with pytest.raises(ValueError, match="own_features must be at least 0 and slot_features at least 1"):
        SlotSumReward(4, 0, 2, 3)
    model = SlotSumReward(4, 3, 2, 3)
    with pytest.raises(ValueError, match="its last 5 features must be a whole number"):
        model(torch.randn(2, 3, 9), torch.randn(2, 3, 2))
    with pytest.raises(ValueError, match="next_obs"):
        SlotSumReward(4, 3, 2, 3, use_next_obs=True)(torch.randn(2, 3, 10), torch.randn(2, 3, 2))


def test_slot_sum_reward_learns_a_per_entity_reward_the_whole_observation_mlp_does_not_yet():
    """A dispersion-like reward, a bump on each uneaten entity the agent's action reaches:
    r = sum_k (1 - eaten_k) exp(-||offset_k - a||^2 / 0.1) over 4 slots [offset (2), eaten (1)]. With one network
    over every slot the fit is within 10% of the reward's variance after 400 steps; the MLP on the whole
    observation, of the same hidden sizes and activation, is not yet at twice that (it must learn the bump once per
    slot)."""
    torch.manual_seed(0)
    own, k, n = 4, 4, 2

    def sample(batch: int):
        offset = torch.rand(batch, n, k, 2) * 2 - 1
        eaten = (torch.rand(batch, n, k, 1) < 0.3).float()
        action = torch.rand(batch, n, 2) * 2 - 1
        bump = torch.exp(-(offset - action.unsqueeze(-2)).pow(2).sum(-1, keepdim=True) / 0.1)
        reward = ((1 - eaten) * bump).sum(-2)
        obs = torch.cat([torch.randn(batch, n, own), torch.cat([offset, eaten], -1).flatten(-2)], -1)
        return obs, action, reward

    def relative_mse(model: nn.Module) -> float:
        _fit(model, sample, steps=400, lr=3e-3, batch=256)
        *inputs, target = sample(2048)
        with torch.no_grad():
            return ((model(*inputs) - target).pow(2).mean() / target.var()).item()

    slots = relative_mse(SlotSumReward(own, 3, 2, n, num_cells=(64, 64)))
    whole = relative_mse(RewardModel(_mlp(RewardModel.in_features(own + 3 * k, 2, use_next_obs=False))))
    assert slots < 0.1 and whole > 2 * slots, (slots, whole)


def test_slot_set_value_is_invariant_to_the_slots_order_and_equivariant_to_the_agents():
    torch.manual_seed(0)
    own, slot, k, n = 4, 3, 5, 3
    model = SlotSet(own, slot, n).double()
    obs = torch.randn(6, n, own + k * slot, dtype=torch.float64)
    out = model(obs)
    assert out.shape == (6, n, 1)
    torch.testing.assert_close(model(_permute_slots(obs, torch.tensor([3, 0, 4, 1, 2]), own, slot)), out)
    agents = torch.tensor([2, 0, 1])
    torch.testing.assert_close(model(_permute_agents(obs, agents)), _permute_agents(out, agents))
    with pytest.raises(ValueError, match="its last 5 features must be a whole number"):
        model(torch.randn(2, n, 9))


def test_slot_set_value_learns_a_value_that_is_not_a_sum_over_the_slots():
    """A dispersion-like value, the distance to the nearest uneaten entity (not a sum over the slots):
    V = min_k {||offset_k|| : not eaten_k} over 4 slots [offset (2), eaten (1)], at least one uneaten. After 600
    steps the fit is within 1% of the value's variance (a sum over the slots in place of the maximum: 22%)."""
    torch.manual_seed(0)
    own, k, n = 4, 4, 2

    def sample(batch: int):
        offset = torch.rand(batch, n, k, 2) * 2 - 1
        eaten = torch.rand(batch, n, k) < 0.3
        eaten[..., 0] &= ~eaten.all(-1)
        value = offset.norm(dim=-1).masked_fill(eaten, torch.inf).min(-1, keepdim=True).values
        obs = torch.cat([torch.randn(batch, n, own), torch.cat([offset, eaten.unsqueeze(-1)], -1).flatten(-2)], -1)
        return obs, value

    model = SlotSet(own, 3, n, hidden_size=64, num_cells=(64,))
    _fit(model, sample, steps=600, lr=3e-3, batch=256)
    obs, target = sample(2048)
    with torch.no_grad():
        assert ((model(obs) - target).pow(2).mean() / target.var()).item() < 0.01


@pytest.mark.parametrize("clamped_mean", [True, False])
def test_the_deterministic_action_is_the_clamped_actions_mean(clamped_mean: bool):
    """With ``clamped_mean`` the deterministic action (BenchMARL's deterministic evaluation) is the mean of the
    clamped random actions, E[clip(μ + σε)] in closed form, checked against 200,000 draws; without, μ clamped."""
    torch.manual_seed(0)
    loc = torch.tensor([[-2.0, -1.0, -0.3, 0.0], [0.2, 0.5, 1.0, 3.0]])
    module = TensorDictModule(
        lambda observation: loc.expand(len(observation), *loc.shape), in_keys=["observation"],
        out_keys=[("agents", "loc")],
    )  # fmt: skip
    actor = gaussian_actor(
        module, action_dim=4, loc_key=("agents", "loc"), scale_key=("agents", "scale"), action_key=("agents", "action"),
        action_std=0.8, spec=Bounded(-1.0, 1.0, shape=(2, 4)), clamped_mean=clamped_mean,
    )  # fmt: skip
    observation = TensorDict({"observation": torch.zeros(200_000, 1)}, [200_000])
    with set_exploration_type(ExplorationType.RANDOM):
        sampled = actor(observation.clone())["agents", "action"]
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        deterministic = actor(observation[:1].clone())["agents", "action"][0]
    assert sampled.min() >= -1 and sampled.max() <= 1
    expected = sampled.mean(0) if clamped_mean else loc.clamp(-1, 1)
    torch.testing.assert_close(deterministic, expected, atol=0.006 if clamped_mean else 0, rtol=0)
    assert clamped_mean == ((deterministic - loc.clamp(-1, 1)).abs().max() > 0.2)  # at μ = ±1: about 0.7
