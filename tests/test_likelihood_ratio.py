"""The actor loss's likelihood-ratio term: the clamped policy's score, the advantage, the importance ratio, and its
expectation against the pathwise gradient's closed form."""

from __future__ import annotations

import copy

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from test_objectives import hand_td_lambda, linear_critic, random_window
from torchrl.data import Bounded
from torchrl.envs import ExplorationType, set_exploration_type
from toy_env import make_point_mass_env

from torchrl_shacpp.collectors import WindowCollector, attach_policy_graph
from torchrl_shacpp.modules import clamped_normal_log_prob, gaussian_actor
from torchrl_shacpp.objectives import SHACActorLoss, TDLambdaValueLoss
from torchrl_shacpp.optim import FiniteGradientStep
from torchrl_shacpp.trainers import GroupUpdate, SimulatorGradient, WindowUpdate

KEYS = dict(
    reward=("agents", "reward"), value=("agents", "state_value"), loc=("agents", "loc"), scale=("agents", "scale"),
    action=("agents", "action"), sample_log_prob=("agents", "sample_log_prob"), advantage=("agents", "advantage"),
)  # fmt: skip


def clipped_mean_gradient(mu: float, low: float, high: float) -> float:
    r""":math:`\partial_\mu \mathbb E[\operatorname{clip}(\mu + \varepsilon, l, h)] = \Phi(h - \mu) - \Phi(l - \mu)`."""
    normal = torch.distributions.Normal(0.0, 1.0)
    return (normal.cdf(torch.tensor(high - mu)) - normal.cdf(torch.tensor(low - mu))).item()


def test_clamped_normal_score_is_the_clamped_actions_likelihood_ratio():
    """The score of :func:`clamped_normal_log_prob` gives the likelihood-ratio gradient of the clamped action's mean,
    whose closed form is the mass inside the box; the Gaussian density at the faces (no point masses) does not."""
    torch.manual_seed(0)
    mu = torch.tensor(0.6, requires_grad=True)
    sample = (mu.detach() + torch.randn(400_000)).clamp(-1.0, 1.0)
    log_prob = clamped_normal_log_prob(sample[:, None], mu, torch.tensor(1.0), -1.0, 1.0)
    (score,) = torch.autograd.grad(log_prob.mean(), mu, retain_graph=True)
    assert score.item() == pytest.approx(0.0, abs=0.01)  # a score's expectation is 0
    (estimate,) = torch.autograd.grad((sample * log_prob).mean(), mu)  # mean of f(a) · ∂μ log p(a)
    expected = clipped_mean_gradient(0.6, -1.0, 1.0)
    assert estimate.item() == pytest.approx(expected, abs=0.01)
    gaussian = sample - 0.6  # the Gaussian density's score at every sample, faces included
    assert abs((gaussian * sample).mean().item() - expected) > 0.1


def test_clamped_normal_log_prob_puts_the_tails_on_the_faces():
    """Inside the box the Gaussian's log-density; on a face the log of the mass beyond it; summed over components."""
    loc, scale = torch.tensor([0.2, -0.5, 0.0]), torch.tensor([0.5, 2.0, 1.0])
    action = torch.tensor([0.1, -1.0, 1.0])
    normal = torch.distributions.Normal(loc, scale)
    expected = torch.stack(
        [normal.log_prob(action)[0], normal.cdf(action)[1].log(), (1 - normal.cdf(action)[2]).log()]
    ).sum()
    torch.testing.assert_close(clamped_normal_log_prob(action, loc, scale, -1.0, 1.0), expected)


def zero_critic() -> TensorDictModule:
    critic = torch.nn.Linear(1, 1)
    torch.nn.init.zeros_(critic.weight)
    torch.nn.init.zeros_(critic.bias)
    return TensorDictModule(critic, in_keys=[("agents", "observation")], out_keys=[("agents", "state_value")])


def bandit_window(mu: torch.Tensor, num_envs: int) -> TensorDict:
    """One terminal step per env: the action :math:`\\operatorname{clip}(\\mu + \\varepsilon, -1, 1)` is the reward."""
    shape = (num_envs, 1, 1, 1)
    loc = mu.expand(shape)
    action = (loc.detach() + torch.randn(shape)).clamp(-1.0, 1.0)
    ended = torch.ones(num_envs, 1, 1, dtype=torch.bool)
    return TensorDict(
        {
            "agents": {"observation": torch.zeros(shape), "loc": loc, "scale": torch.ones(shape), "action": action},
            "next": {
                "agents": {"observation": torch.zeros(shape), "reward": action.clone()},
                "terminated": ended, "truncated": torch.zeros_like(ended), "done": ended,
            },
        },
        batch_size=[num_envs, 1],
    )  # fmt: skip


def likelihood_ratio_loss(weight: float = 2.0, critic=None, **kwargs) -> SHACActorLoss:
    actor = TensorDictModule(torch.nn.Identity(), in_keys=[("agents", "loc")], out_keys=[("agents", "loc")])
    loss = SHACActorLoss(
        actor, critic or zero_critic(), action_low=-1.0, action_high=1.0, likelihood_ratio_weight=weight, **kwargs
    )
    loss.set_keys(**KEYS)
    return loss


def test_likelihood_ratio_gradient_is_the_expected_returns_gradient():
    """On a bandit whose reward is the clamped action, the term's gradient w.r.t. the policy mean is, in
    expectation, ``weight`` times the closed-form gradient of the expected reward (the pathwise one's expectation)."""
    torch.manual_seed(1)
    mu = torch.tensor(0.3, requires_grad=True)
    window = bandit_window(mu, 400_000)
    value = likelihood_ratio_loss(weight=2.0).likelihood_ratio_loss(window)
    (gradient,) = torch.autograd.grad(value, mu)
    assert -gradient.item() / 2.0 == pytest.approx(clipped_mean_gradient(0.3, -1.0, 1.0), abs=0.01)
    torch.testing.assert_close(value, -2.0 * window["next", "agents", "reward"].mean())  # ρ = 1 in value


def test_likelihood_ratio_is_zero_and_off_by_default():
    mu = torch.tensor(0.3, requires_grad=True)
    loss = likelihood_ratio_loss(weight=0.0)
    assert loss.likelihood_ratio_loss(bandit_window(mu, 8)).item() == 0.0


def test_importance_ratio_against_the_collecting_policy_is_clipped_as_ppos():
    """With the collecting policy's log-probability in the window the term is PPO's clipped surrogate: its value by
    hand, and no gradient where the ratio has left :math:`[1 - \\epsilon, 1 + \\epsilon]` on the advantage's side."""
    torch.manual_seed(2)
    mu = torch.tensor(0.5, requires_grad=True)
    window = bandit_window(mu, 64)
    action = window["agents", "action"]
    window["agents", "sample_log_prob"] = clamped_normal_log_prob(action, torch.zeros(()), torch.ones(()), -1.0, 1.0)[
        ..., None
    ]
    loss = likelihood_ratio_loss(weight=1.0, likelihood_ratio_clip=0.2)
    value = loss.likelihood_ratio_loss(window)
    log_prob = clamped_normal_log_prob(action, mu.detach(), torch.ones(()), -1.0, 1.0)[..., None]
    ratio = (log_prob - window["agents", "sample_log_prob"]).exp()
    advantage = window["next", "agents", "reward"]
    expected = -torch.minimum(ratio * advantage, ratio.clamp(0.8, 1.2) * advantage).mean()
    torch.testing.assert_close(value, expected)
    clipped = ((ratio > 1.2) & (advantage > 0)) | ((ratio < 0.8) & (advantage < 0))
    assert 0 < clipped.sum() < clipped.numel()
    loc = window["agents", "loc"]
    (gradient,) = torch.autograd.grad(loss.likelihood_ratio_loss(window), loc)
    assert (gradient[clipped] == 0).all() and (gradient[~clipped] != 0).all()


def test_advantage_is_the_td_lambda_target_less_the_value_with_terminations_and_truncations():
    """GAE's advantage plus the value is the TD(λ) target, on a window whose next observations are the following
    steps' observations except across an episode's end (a reset)."""
    window = random_window()
    observation, next_observation = window["agents", "observation"], window["next", "agents", "observation"]
    follows = ~window["next", "done"][:, :-1, None, :].expand_as(observation[:, 1:])
    observation[:, 1:] = torch.where(follows, next_observation[:, :-1], observation[:, 1:])
    loss = likelihood_ratio_loss(critic=linear_critic(), gamma=0.9, advantage_lmbda=0.7)
    value = window["agents", "observation"]  # the linear critic is the identity
    next_value = window["next", "agents", "observation"]
    done = window["next", "done"][..., None, :].expand_as(value)
    terminated = window["next", "terminated"][..., None, :].expand_as(value)
    done = done.clone()
    done[:, -1] = True  # the window's end cuts the return
    target = hand_td_lambda(window["next", "agents", "reward"], next_value, done, terminated, 0.9, 0.7)
    torch.testing.assert_close(loss.advantage(window), target - value)


def test_attached_window_carries_the_collecting_policys_log_prob():
    """``attach_policy_graph`` writes each collected action's log-probability under the policy that collected it
    (the clamped law on the actor's box), which is the current policy's until the policy changes; without the
    collected mean it refuses with the fix."""
    torch.manual_seed(0)
    n_agents, dim = 2, 2
    network = torch.nn.Linear(dim, dim)
    loc = TensorDictModule(network, in_keys=[("agents", "observation")], out_keys=[("agents", "loc")])
    actor = gaussian_actor(
        loc, action_dim=dim, loc_key=("agents", "loc"), scale_key=("agents", "scale"),
        action_key=("agents", "action"), action_std=0.5, spec=Bounded(-0.3, 0.3, shape=(n_agents, dim)),
    )  # fmt: skip
    env = make_point_mass_env(torch.randn(3, n_agents, dim), terminate_at=[0, 0, 0], max_steps=100)
    window = WindowCollector(env, actor, window_length=8, graph="policy").rollout().detach()
    keys = dict(action_key=("agents", "action"), loc_key=("agents", "loc"), scale_key=("agents", "scale"))
    attached = attach_policy_graph(window, actor, log_prob_key=("agents", "sample_log_prob"), **keys)
    expected = clamped_normal_log_prob(
        window["agents", "action"], window["agents", "loc"], window["agents", "scale"], -0.3, 0.3
    )
    torch.testing.assert_close(attached["agents", "sample_log_prob"], expected[..., None])
    current = clamped_normal_log_prob(
        attached["agents", "action"], attached["agents", "loc"], attached["agents", "scale"], -0.3, 0.3
    )
    torch.testing.assert_close(current.detach(), expected)
    with torch.no_grad():
        network.bias.add_(0.1)
    moved = attach_policy_graph(window, actor, log_prob_key=("agents", "sample_log_prob"), **keys)
    torch.testing.assert_close(moved["agents", "sample_log_prob"], expected[..., None])  # still the collecting one
    without_mean = window.exclude(("agents", "loc"))
    with pytest.raises(KeyError, match="collecting policy"):
        attach_policy_graph(without_mean, actor, log_prob_key=("agents", "sample_log_prob"), **keys)


def test_likelihood_ratio_needs_the_action_box():
    actor = TensorDictModule(torch.nn.Identity(), in_keys=[("agents", "loc")], out_keys=[("agents", "loc")])
    with pytest.raises(ValueError, match="action box"):
        SHACActorLoss(actor, zero_critic(), action_bound_coef=0.0, likelihood_ratio_weight=1.0)


def bandit_actor(mu: float) -> torch.nn.Module:
    """The clamped Gaussian policy :math:`\\mathcal N(\\mu, 1)` on ``[-1, 1]`` whose mean is a learned constant (a
    bias on the zero observation)."""
    network = torch.nn.Linear(1, 1)
    torch.nn.init.zeros_(network.weight)
    torch.nn.init.constant_(network.bias, mu)
    loc = TensorDictModule(network, in_keys=[("agents", "observation")], out_keys=[("agents", "loc")])
    return gaussian_actor(
        loc, action_dim=1, loc_key=("agents", "loc"), scale_key=("agents", "scale"), action_key=("agents", "action"),
        spec=Bounded(-1.0, 1.0, shape=(1, 1)),
    )  # fmt: skip


def policy_mean(actor: torch.nn.Module) -> float:
    """:func:`bandit_actor`'s mean :math:`\\mu`."""
    (bias,) = [parameter for name, parameter in actor.named_parameters() if name.endswith("bias")]
    return bias.item()


def collected_bandit(actor: torch.nn.Module, num_envs: int) -> TensorDict:
    """:func:`bandit_window` collected by ``actor``, without a graph."""
    shape = (num_envs, 1, 1, 1)
    window = TensorDict({"agents": {"observation": torch.zeros(shape)}}, batch_size=[num_envs, 1])
    with set_exploration_type(ExplorationType.RANDOM), torch.no_grad():
        actor(window)
    ended = torch.ones(num_envs, 1, 1, dtype=torch.bool)
    window["next"] = TensorDict(
        {
            "agents": {"observation": torch.zeros(shape), "reward": window["agents", "action"].clone()},
            "terminated": ended, "truncated": torch.zeros_like(ended), "done": ended,
        },
        batch_size=[num_envs, 1],
    )  # fmt: skip
    return window


def actor_likelihood_ratio_loss(actor: torch.nn.Module, weight: float = 2.0) -> SHACActorLoss:
    loss = SHACActorLoss(actor, zero_critic(), action_low=-1.0, action_high=1.0, likelihood_ratio_weight=weight)
    loss.set_keys(**KEYS)
    return loss


def test_minibatch_surrogate_on_every_item_is_the_window_terms():
    """PPO's minibatch loss on all of :meth:`likelihood_ratio_items` is the window's likelihood-ratio term divided by
    its weight, in value and in gradient, while the policy is the collecting one: the same estimate, taken in steps
    of its own."""
    torch.manual_seed(3)
    actor = bandit_actor(0.2)
    loss = actor_likelihood_ratio_loss(actor, weight=2.0)
    window = collected_bandit(actor, 256)
    keys = dict(action_key=("agents", "action"), loc_key=("agents", "loc"), scale_key=("agents", "scale"))
    attached = attach_policy_graph(window, actor, log_prob_key=("agents", "sample_log_prob"), **keys)
    window_term = loss.likelihood_ratio_loss(attached) / 2.0
    items = loss.likelihood_ratio_items(window)
    assert items.batch_size == (256,) and not items["agents", "advantage"].requires_grad
    torch.testing.assert_close(items["agents", "advantage"], window["next", "agents", "reward"].reshape(256, 1, 1))
    minibatch = loss.minibatch_likelihood_ratio_loss(items)
    torch.testing.assert_close(minibatch, window_term)
    parameters = list(actor.parameters())
    for expected, gradient in zip(
        torch.autograd.grad(window_term, parameters), torch.autograd.grad(minibatch, parameters), strict=True
    ):
        torch.testing.assert_close(gradient, expected)


def likelihood_ratio_update(
    actor: torch.nn.Module, steps: int, minibatch_size: int | None, collections: int = 1
) -> WindowUpdate:
    """A one-group update whose only training here is PPO's minibatch steps (Adam, rate 0.05)."""
    loss = actor_likelihood_ratio_loss(actor)
    ppo_step = FiniteGradientStep(torch.optim.Adam(actor.parameters(), lr=0.05))
    group = GroupUpdate(
        loss, FiniteGradientStep(torch.optim.SGD(actor.parameters(), lr=0.0)), TDLambdaValueLoss(zero_critic()),
        SimulatorGradient(), likelihood_ratio_step=ppo_step,
    )  # fmt: skip
    return WindowUpdate(
        {"agents": group}, likelihood_ratio_steps=steps, likelihood_ratio_minibatch_size=minibatch_size,
        likelihood_ratio_collections=collections,
    )  # fmt: skip


def test_likelihood_ratio_steps_raise_the_rewarded_mean_within_ppos_clip_and_skip_non_finite_items():
    """On the bandit whose reward is the clamped action, PPO's minibatch steps raise the policy's mean and, taken on
    the same batch again and again, end at the maximum of its clipped surrogate (found on a grid), where the ratio's
    clip stops them. A transition whose reward is NaN is left out of the steps. The optimiser's state, the skip count
    and the minibatch draws are saved and restored: a restored update takes the uninterrupted one's steps."""
    torch.manual_seed(4)
    actor = bandit_actor(0.0)
    batch = collected_bandit(actor, 512)
    batch["next", "agents", "reward"][0] = float("nan")
    update = likelihood_ratio_update(actor, steps=8, minibatch_size=128)
    logs = update.train_likelihood_ratio("agents", update.groups["agents"], batch)
    mean = policy_mean(actor)
    assert 0.05 < mean < 1.0
    assert all(p.isfinite().all() for p in actor.parameters())
    assert logs["train/agents/skipped_likelihood_ratio_steps"] == 0
    assert set(logs) == {
        "train/agents/likelihood_ratio_step_loss", "train/agents/likelihood_ratio_grad_norm",
        "train/agents/skipped_likelihood_ratio_steps",
    }  # fmt: skip
    for _ in range(40):  # many more steps on the same batch: they end at the clipped surrogate's maximum
        update.train_likelihood_ratio("agents", update.groups["agents"], batch)
    held = policy_mean(actor)
    loss = update.groups["agents"].actor_loss
    items = loss.likelihood_ratio_items(batch)
    items = items[items["agents", "advantage"].reshape(-1).isfinite()]

    def surrogate(mu: float) -> float:
        log_prob = clamped_normal_log_prob(items["agents", "action"], torch.tensor(mu), torch.ones(()), -1.0, 1.0)
        return -loss.clipped_surrogate(log_prob[..., None], items["agents", "sample_log_prob"],
                                       items["agents", "advantage"]).item()

    best = max(surrogate(mu) for mu in torch.linspace(-1.0, 2.0, 301).tolist())
    assert held > mean and surrogate(held) == pytest.approx(best, abs=2e-3)
    assert surrogate(held) > surrogate(0.0) + 0.05
    state = update.state_dict()["groups"]["agents"]
    assert state["likelihood_ratio_optimizer"]["state"] and state["skipped_likelihood_ratio_steps"] == 0
    restored_actor = bandit_actor(held)
    restored = likelihood_ratio_update(restored_actor, steps=8, minibatch_size=100)
    restored.load_state_dict(copy.deepcopy(update.state_dict()))  # as from a file: no tensor shared
    restored_optimizer = restored.groups["agents"].likelihood_ratio_step.optimizer.state_dict()["state"]
    for name, value in state["likelihood_ratio_optimizer"]["state"][0].items():
        torch.testing.assert_close(restored_optimizer[0][name], value)
    update.likelihood_ratio_minibatch_size = 100  # minibatches across the passes' ends: the draws must agree too
    for learner in (update, restored):
        learner.train_likelihood_ratio("agents", learner.groups["agents"], batch)
    assert policy_mean(restored_actor) == policy_mean(actor)  # the same minibatches, the same steps


def test_likelihood_ratio_steps_draw_from_the_last_collections_with_the_current_critic():
    """With ``likelihood_ratio_collections=2`` a step's minibatch holds the transitions of this batch and the one
    before (each with the log-probability of the policy that collected it) and not older ones, its advantages those
    of the critic as it is at the step, not as it was when the batch was collected. A batch of another shape starts
    the collections again; the kept batches are saved and restored with the update."""
    torch.manual_seed(5)
    batches = [collected_bandit(bandit_actor(mu), 64) for mu in (-0.5, 0.0, 0.5)]
    actor = bandit_actor(0.2)
    update = likelihood_ratio_update(actor, steps=1, minibatch_size=None, collections=2)
    loss = update.groups["agents"].actor_loss
    critic = loss.value_network.module

    def expected_loss(*kept: TensorDict) -> float:
        with torch.no_grad():
            items = torch.cat([loss.likelihood_ratio_items(batch) for batch in kept])
            return loss.minibatch_likelihood_ratio_loss(items).item()

    first = expected_loss(batches[0])
    assert update.train_likelihood_ratios(batches[0])["train/agents/likelihood_ratio_step_loss"] == pytest.approx(first)
    torch.nn.init.constant_(critic.bias, 0.5)  # the critic moves: the kept batch's advantages with it
    both = expected_loss(batches[0], batches[1])
    assert both != pytest.approx(expected_loss(batches[1]))
    assert update.train_likelihood_ratios(batches[1])["train/agents/likelihood_ratio_step_loss"] == pytest.approx(both)
    restored_actor = copy.deepcopy(actor)
    restored = likelihood_ratio_update(restored_actor, steps=1, minibatch_size=None, collections=2)
    restored.load_state_dict(copy.deepcopy(update.state_dict()))
    torch.nn.init.constant_(restored.groups["agents"].actor_loss.value_network.module.bias, 0.5)
    last = expected_loss(batches[1], batches[2])  # the first batch has left
    for learner in (update, restored):
        logs = learner.train_likelihood_ratios(batches[2])
        assert logs["train/agents/likelihood_ratio_step_loss"] == pytest.approx(last)
    assert policy_mean(restored_actor) == pytest.approx(policy_mean(actor))
    shorter = collected_bandit(actor, 16)
    alone = expected_loss(shorter)
    assert update.train_likelihood_ratios(shorter)["train/agents/likelihood_ratio_step_loss"] == pytest.approx(alone)


def test_likelihood_ratio_steps_need_a_group_with_their_step():
    actor = bandit_actor(0.0)
    loss = actor_likelihood_ratio_loss(actor)
    group = GroupUpdate(
        loss, FiniteGradientStep(torch.optim.SGD(actor.parameters(), lr=0.0)), TDLambdaValueLoss(zero_critic()),
        SimulatorGradient(),
    )  # fmt: skip
    with pytest.raises(ValueError, match="no group has one"):
        WindowUpdate({"agents": group}, likelihood_ratio_steps=2)
