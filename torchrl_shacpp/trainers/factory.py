"""SHAC, SHAC+ and SHAC++ learners for a multi-agent TorchRL env, with the paper's transformer networks.

For plain TorchRL scripts and benchmarks (the BenchMARL algorithms build theirs from BenchMARL's model configs): the
agent-set transformer for the policy, the critic and the reward model, the axis-attention world model, the
return-stratified caches, and the :class:`~torchrl_shacpp.trainers.WindowUpdate` that trains them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from tensordict.nn import TensorDictModule, TensorDictModuleBase
from torchrl.envs import EnvBase
from torchrl.modules import ProbabilisticActor
from torchrl.objectives import SoftUpdate

from torchrl_shacpp.checks import check_choice
from torchrl_shacpp.data import make_stratified_cache
from torchrl_shacpp.modules import (
    AgentSetTransformer,
    AxisAttentionWorldModel,
    TransformerRewardModel,
    WORLD_ROLLOUTS,
    PeriodicFeatures,
    TransitionWorldModel,
    gaussian_actor,
    spliced_world_model,
    transition_world_model,
    window_world_model,
)
from torchrl_shacpp.objectives import (
    RewardModelLoss,
    SHACActorLoss,
    TDLambdaValueLoss,
    TransitionModelLoss,
    WorldModelLoss,
)
from torchrl_shacpp.optim import FiniteGradientStep, PolicyMeanStepBound
from torchrl_shacpp.trainers.cooldown import CoolDown
from torchrl_shacpp.trainers.learned import LearnedModel, reward_items, value_items, world_items
from torchrl_shacpp.trainers.sources import (
    GradientSource,
    LearnedRewardGradient,
    LearnedWorldGradient,
    SimulatorGradient,
)
from torchrl_shacpp.trainers.window_update import GroupUpdate, WindowUpdate

Algorithm = Literal["shac", "shacp", "shacpp"]


@dataclass
class Learners:
    """What :func:`make_learners` builds for one agent group.

    Attributes:
        policy: the Gaussian policy (collect with it).
        value_loss: the critic's TD(λ) loss (its ``value_network`` is the critic). SHAC and SHAC+ train it on each
            window in the caller's loop, SHAC++ from its cache inside ``update``.
        target_updater: the critic's Polyak updater, stepped by the caller after its critic steps (SHAC, SHAC+).
        update: the window update (actor steps, value targets, caches, cool-down).
        reward_model, world_model: the learned models' modules (``None`` where the algorithm has none).
    """

    policy: ProbabilisticActor
    value_loss: TDLambdaValueLoss
    target_updater: SoftUpdate | None
    update: WindowUpdate
    reward_model: TensorDictModuleBase | None = None
    world_model: TensorDictModuleBase | None = None


def make_actor_loss(
    env: EnvBase,
    policy: ProbabilisticActor,
    value_loss: TDLambdaValueLoss,
    source: GradientSource,
    *,
    group: str = "agents",
    gamma: float = 0.99,
    value_params=None,
    world_gradient: float = 1.0,
) -> SHACActorLoss:
    """The SHAC window objective of ``group``, its gradient carried by ``source`` (bootstrapping with the value
    loss's critic, or with ``value_params``); ``world_gradient`` weighs the gradient through the source's world model
    (:class:`~torchrl_shacpp.objectives.SHACActorLoss`)."""
    action_space = env.full_action_spec_unbatched[group, "action"].space
    actor_loss = SHACActorLoss(
        policy,
        value_loss.value_network,
        gamma=gamma,
        value_params=value_loss.bootstrap_params if value_params is None else value_params,
        action_low=action_space.low,
        action_high=action_space.high,
        reward_model=source.reward_model,
        world_model=source.world_model,
        world_gradient=world_gradient,
    )
    actor_loss.set_keys(
        reward=(group, "reward"), value=(group, "state_value"), loc=(group, "loc"), action=(group, "action"),
        predicted_reward=(group, "predicted_reward"),
    )  # fmt: skip
    return actor_loss


def make_learners(
    env: EnvBase,
    algorithm: Algorithm,
    *,
    group: str = "agents",
    window_length: int = 32,
    gamma: float = 0.99,
    lmbda: float = 0.95,
    actor_lr: float = 1e-3,
    model_lr: float = 1e-3,
    action_std: float = 1.0,
    learn_std: bool = False,
    policy_dropout: float = 0.0,
    policy_network: torch.nn.Module | None = None,
    actor_max_mean_change: float | None = None,
    actor_skip_grad_norm: float | None = None,
    actor_grad_outlier_ratio: float | None = None,
    actor_world_gradient: float = 1.0,
    world_periodic_features: Sequence[Sequence[float]] | None = None,
    world_gradient_growth: float | None = None,
    world_detached_features: Sequence[int] | str | None = None,
    world_trusted_error_ratio: float | None = None,
    use_target_critic: bool | None = None,
    target_tau: float = 0.8,
    cache_size: int = 30_000,
    world_cache_size: int | None = None,
    world_bins: int = 25,
    reward_bins: int = 9,
    reward_uniform_share: float = 0.0,
    value_bins: int = 9,
    model_minibatch_size: int = 1000,
    model_train_every: int = 10,
    model_epochs: int = 10,
    model_steps: int | None = None,
    model_first_steps: Sequence[int] = (),
    model_surprise_steps: int | None = None,
    model_surprise_ratio: float = 3.0,
    world_model_steps: int | None = None,
    world_model_first_epochs: Sequence[int] = (),
    world_model_max_steps: int | None = None,
    world_minibatch_size: int | None = None,
    world_rollout: str = "spliced",
    reward_uses_next_observation: bool = False,
    actor_waits_for_models: bool = False,
    actor_replay_steps: int = 0,
    actor_replay_windows: int = 32,
) -> Learners:
    """The networks, losses, caches and window update of ``algorithm`` on ``env`` (paper defaults).

    The policy, critic and reward model are agent-set transformers (1 layer, hidden 64, feed-forward 128; the policy
    with ``policy_dropout``, the authors' 0.1, unless ``policy_network`` is given); SHAC++'s world model is the
    axis-attention transformer over ``window_length`` steps. SHAC and SHAC+ use a target critic
    (``use_target_critic``, default on, Polyak weight ``target_tau`` on the critic per window: DiffRL's 0.2 on the old
    target), SHAC++ by default not, and trains its critic from a cache of λ-targets on the cool-down, as the authors
    do.

    Args:
        env: a batched multi-agent env with ``(group, "observation")`` ``[*B, n, o]`` and a bounded
            ``(group, "action")`` ``[*B, n, a]``.
        algorithm: ``"shac"``, ``"shacp"`` or ``"shacpp"``.
        policy_network: the policy's mean, a network from observations ``[*B, n, o]`` to ``[*B, n, a]`` in place of
            the agent-set transformer, e.g. :class:`~torchrl_shacpp.modules.SlotSet` with ``out_features=a`` on a
            task whose observations are entity slots.
        actor_max_mean_change: a trust region on the actor's steps, the largest root-mean-square change of the policy's
            mean per step on the step's observations (:class:`~torchrl_shacpp.optim.PolicyMeanStepBound`; logged as
            ``train/<group>/actor_mean_change`` and ``actor_step_scale``), or ``None`` (paper).
        actor_skip_grad_norm: actor steps whose gradient norm is above it are skipped
            (:class:`~torchrl_shacpp.optim.FiniteGradientStep`'s ``skip_grad_norm``), or ``None`` (paper).
        actor_grad_outlier_ratio: SHAC++: bound every agent-step's action gradient to this multiple of the window's
            median one before it reaches the policy (:func:`~torchrl_shacpp.optim.bound_outlier_gradients`), or
            ``None`` (paper).
        actor_world_gradient: SHAC++: the weight of the gradient through the world model's predicted observations to
            the actions in the actor's, the objective unchanged (:class:`~torchrl_shacpp.objectives.SHACActorLoss`'s
            ``world_gradient``; paper: 1).
        world_periodic_features: SHAC++ spliced: ``[[index, period], ...]``, the observation's angle features
            (:class:`~torchrl_shacpp.modules.PeriodicFeatures`), or ``None``.
        world_gradient_growth: SHAC++ spliced: the most each step back along the world model's chain of state
            Jacobians may grow the state's gradient (:func:`~torchrl_shacpp.modules.spliced_world_model`'s
            ``max_gradient_growth``), or ``None``.
        world_detached_features: SHAC++ spliced: the observation features whose predicted values carry no gradient
            to the actions, as indices or ``"integer"`` (those whose values in the window are all integers: flags,
            counts; :func:`~torchrl_shacpp.modules.spliced_world_model`'s ``detached_features``), or ``None``.
        world_trusted_error_ratio: SHAC++ spliced: the agent-steps whose one-step prediction error exceeds this
            multiple of the window's median pass no gradient (:func:`~torchrl_shacpp.modules.spliced_world_model`'s
            ``trusted_error_ratio``), or ``None``.
        world_rollout: SHAC++'s world model, ``"one_pass"`` (the paper's: the window predicted from :math:`o_0`,
            cached as ``world_cache_size`` windows in ``world_bins`` return bins) or ``"spliced"`` (a one-step
            :class:`~torchrl_shacpp.modules.TransitionWorldModel` trained on ``world_cache_size`` transitions, default
            ``cache_size``, sampled uniformly, differentiated along the real rollout:
            :func:`~torchrl_shacpp.modules.spliced_world_model`).
        reward_uniform_share: the share of the reward cache kept for random replacement instead of its
            ``reward_bins`` bins (:class:`~torchrl_shacpp.data.StratifiedWriter`; paper: 0).
        reward_uses_next_observation: the reward model reads :math:`(o_t, a_t, o_{t+1})` instead of the authors'
            :math:`(o_t, a_t)`.
        actor_replay_steps, actor_replay_windows: SHAC++'s replayed actor steps per window and the windows they draw
            from (:class:`WindowUpdate`; paper: 0).
        actor_waits_for_models: SHAC+ and SHAC++'s actor takes its first step after the models' first training
            (:class:`WindowUpdate`).
        model_steps, model_first_steps, model_surprise_steps, model_surprise_ratio: the models' minibatches per
            training instead of ``model_epochs`` passes, those of their first trainings, and those of a training
            whose model's surprise reaches ``model_surprise_ratio`` (:class:`CoolDown`'s ``steps``, ``first_steps``,
            ``surprise_steps``, ``surprise_ratio``; paper: none).
        world_model_steps: minibatches per training of SHAC++'s spliced world model instead of the cool-down's
            ``model_epochs`` passes or ``model_steps`` (:class:`LearnedModel`; the paper's one-pass model, whose
            minibatches are whole windows, trains on the ``model_epochs`` passes, cut by ``world_model_max_steps``).
        world_model_first_epochs: the passes of each of the first trainings of SHAC++'s one-pass world model, instead
            of ``model_epochs`` (:class:`LearnedModel`'s ``first_epochs``).
        world_model_max_steps: at most this many minibatches per training of SHAC++'s one-pass world model
            (:class:`LearnedModel`'s ``max_steps``).
        world_minibatch_size: SHAC++'s world model's minibatch size, in transitions (spliced) or windows (one-pass);
            ``None``: ``model_minibatch_size``.
    """
    if algorithm not in ("shac", "shacp", "shacpp"):
        raise ValueError(f"Unknown algorithm {algorithm!r}: use 'shac', 'shacp' or 'shacpp'.")
    check_choice("world_rollout", world_rollout, WORLD_ROLLOUTS)
    spliced_options = {
        "world_gradient_growth": (world_gradient_growth, "bounds the chain of"),
        "world_detached_features": (world_detached_features, "cuts features from the Jacobians of"),
        "world_trusted_error_ratio": (world_trusted_error_ratio, "cuts badly predicted agent-steps from the chain of"),
    }
    for name, (value, effect) in spliced_options.items():
        if value is not None and (algorithm != "shacpp" or world_rollout != "spliced"):
            raise ValueError(
                f"{name}={value} {effect} SHAC++'s spliced world model: use algorithm='shacpp' with "
                "world_rollout='spliced', or leave it None."
            )
    if world_model_first_epochs and (algorithm != "shacpp" or world_rollout != "one_pass"):
        raise ValueError(
            f"world_model_first_epochs={list(world_model_first_epochs)} gives passes to the first trainings of "
            "SHAC++'s one-pass world model: use algorithm='shacpp' with world_rollout='one_pass', or leave it empty."
        )
    if world_model_max_steps is not None and (algorithm != "shacpp" or world_rollout != "one_pass"):
        raise ValueError(
            f"world_model_max_steps={world_model_max_steps} bounds the trainings of SHAC++'s one-pass world model: "
            "use algorithm='shacpp' with world_rollout='one_pass', or leave it None."
        )
    if actor_grad_outlier_ratio is not None and algorithm != "shacpp":
        raise ValueError(
            f"actor_grad_outlier_ratio={actor_grad_outlier_ratio} bounds the action gradients of SHAC++'s world model; "
            f"{algorithm!r} differentiates the simulator's own steps: use algorithm='shacpp', or leave it None."
        )
    if world_periodic_features and (algorithm != "shacpp" or world_rollout != "spliced"):
        raise ValueError(
            f"world_periodic_features={world_periodic_features} are read and learned by SHAC++'s spliced transition "
            "model: use algorithm='shacpp' with world_rollout='spliced', or leave them None."
        )
    if actor_world_gradient != 1 and algorithm != "shacpp":
        raise ValueError(
            f"actor_world_gradient={actor_world_gradient} weighs the gradient through SHAC++'s world model; "
            f"{algorithm!r} has none: use algorithm='shacpp', or leave it 1."
        )
    observation_key, action_key, reward_key = (group, "observation"), (group, "action"), (group, "reward")
    n_agents, obs_dim = env.observation_spec[observation_key].shape[-2:]
    action_spec = env.full_action_spec_unbatched[action_key]
    action_dim = action_spec.shape[-1]
    if policy_network is None:
        policy_network = AgentSetTransformer(obs_dim, action_dim, dropout=policy_dropout)
    loc = TensorDictModule(policy_network, in_keys=[observation_key], out_keys=[(group, "loc")])
    policy = gaussian_actor(
        loc, action_dim=action_dim, loc_key=(group, "loc"), scale_key=(group, "scale"), action_key=action_key,
        action_std=action_std, learn_std=learn_std, spec=action_spec,
    )  # fmt: skip
    critic = TensorDictModule(AgentSetTransformer(obs_dim, 1), in_keys=[observation_key], out_keys=[(group, "state_value")])
    if use_target_critic is None:
        use_target_critic = algorithm != "shacpp"
    value_loss = TDLambdaValueLoss(critic, gamma=gamma, lmbda=lmbda, use_target_network=use_target_critic)
    value_loss.set_keys(reward=reward_key, value=(group, "state_value"), value_target=(group, "value_target"))
    target_updater = SoftUpdate(value_loss, tau=target_tau) if use_target_critic else None

    cache = functools.partial(make_stratified_cache, batch_size=model_minibatch_size)
    keys = dict(observation_key=observation_key, action_key=action_key, reward_key=reward_key)
    learned = functools.partial(LearnedModel, lr=model_lr)
    reward_module = world_module = None
    source: GradientSource = SimulatorGradient()
    if algorithm in ("shacp", "shacpp"):
        reward_module = TensorDictModule(
            TransformerRewardModel(obs_dim, action_dim, use_next_obs=reward_uses_next_observation),
            in_keys=[observation_key, action_key, *[("next", *observation_key)] * reward_uses_next_observation],
            out_keys=[(group, "predicted_reward")],
        )  # fmt: skip
        reward_loss = RewardModelLoss(reward_module)
        reward_loss.set_keys(reward=reward_key, predicted_reward=(group, "predicted_reward"))
        reward = learned(
            "reward", reward_loss,
            cache(cache_size, reward_bins, score_key=("next", *reward_key), uniform_share=reward_uniform_share),
            functools.partial(reward_items, **keys),
        )  # fmt: skip
        source = LearnedRewardGradient(reward)
    value_model = None
    if algorithm == "shacpp":
        keys_of_world = dict(observation_key=observation_key, action_key=action_key)
        world_cache = functools.partial(cache, batch_size=world_minibatch_size or model_minibatch_size)
        if world_rollout == "spliced":
            periodic = PeriodicFeatures(world_periodic_features or [])
            transition = TransitionWorldModel(obs_dim, action_dim, periodic=periodic)
            world_loss = TransitionModelLoss(transition_world_model(transition, **keys_of_world), periodic=periodic)
            world_loss.set_keys(observation=observation_key, predicted_observation=(group, "predicted_observation"))
            world = learned(
                # Transitions, sampled uniformly: stratified by reward, the model's Jacobian learned the common
                # dynamics more slowly (benchmarks/results/shacpp_gradient_alignment.md).
                "world", world_loss, world_cache(world_cache_size or cache_size, 1, score_key=("next", *reward_key)),
                functools.partial(reward_items, **keys), steps=world_model_steps,
            )  # fmt: skip
            world_module = spliced_world_model(
                transition, max_gradient_growth=world_gradient_growth, detached_features=world_detached_features,
                trusted_error_ratio=world_trusted_error_ratio, **keys_of_world,
            )  # fmt: skip
        else:
            world_module = window_world_model(
                AxisAttentionWorldModel(obs_dim, action_dim, window_length), **keys_of_world
            )
            world_loss = WorldModelLoss(world_module)
            world_loss.set_keys(observation=observation_key)
            world = learned(
                "world", world_loss, world_cache(world_cache_size or cache_size, world_bins),
                functools.partial(world_items, **keys), window_length=window_length, epochs_only=True,
                first_epochs=world_model_first_epochs, max_steps=world_model_max_steps,
            )  # fmt: skip
        source = LearnedWorldGradient(
            world, source.reward, policy, action_key=action_key, loc_key=(group, "loc"), scale_key=(group, "scale"),
            actor_world_model=world_module, action_grad_outlier_ratio=actor_grad_outlier_ratio,
        )  # fmt: skip
        value_model = learned(
            "value", value_loss, cache(cache_size, value_bins, score_key=(group, "value_target")),
            functools.partial(value_items, observation_key=observation_key, value_target_key=(group, "value_target")),
        )  # fmt: skip

    actor_loss = make_actor_loss(
        env, policy, value_loss, source, group=group, gamma=gamma, world_gradient=actor_world_gradient
    )
    actor_step = FiniteGradientStep(
        torch.optim.Adam(actor_loss.parameters(), lr=actor_lr), max_grad_norm=1.0, skip_grad_norm=actor_skip_grad_norm
    )
    step_bound = None
    if actor_max_mean_change is not None:
        step_bound = PolicyMeanStepBound(policy, actor_step.parameters, (group, "loc"), actor_max_mean_change)
    group_update = GroupUpdate(
        actor_loss, actor_step, value_loss, source, value_model=value_model,
        target_updater=target_updater if value_model is not None else None, step_bound=step_bound,
    )  # fmt: skip
    cooldown = None
    if group_update.models:
        cooldown = CoolDown(
            every=model_train_every, epochs=model_epochs, steps=model_steps, first_steps=tuple(model_first_steps),
            surprise_steps=model_surprise_steps, surprise_ratio=model_surprise_ratio,
        )  # fmt: skip
    return Learners(
        policy=policy,
        value_loss=value_loss,
        target_updater=target_updater if value_model is None else None,
        update=WindowUpdate(
            {group: group_update}, cooldown=cooldown, actor_waits_for_models=actor_waits_for_models,
            actor_replay_steps=actor_replay_steps, actor_replay_windows=actor_replay_windows,
        ),
        reward_model=reward_module,
        world_model=world_module,
    )
