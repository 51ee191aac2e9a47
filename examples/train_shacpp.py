"""SHAC++ on a VMAS task, in plain TorchRL: policy gradients through learned world and reward models.

The simulator gives no gradient (any VMAS task works, dispersion and discovery included). Each iteration collects
one window of ``--window`` steps on ``--num-envs`` parallel envs keeping only the policy's autograd graph, and
takes one actor step on the SHAC++ objective: a world model predicts the window's observations in one pass from
the real first observation and the graph-carrying actions, a reward model and the critic score the predictions.
Then the window's real data go to three return-stratified caches (world: whole windows; reward: transitions;
value: transitions with their TD(λ) targets), and every ``--train-every`` windows each model trains for
``--model-epochs`` passes over its cache. A deterministic evaluation runs every ``--eval-every`` windows. The
return-vs-frames curve (``<out>/curve.csv``, ``<out>/curve.png``) and the policy's state dict (``<out>/policy.pt``)
are written at every evaluation; besides the columns of ``train_shac.py``, ``curve.csv`` has each model's mean
minibatch loss in its latest training (``loss_world``, ``loss_reward``, ``loss_value``; NaN before the first) and
the skipped (non-finite) optimiser steps of the actor and of each model so far.

On a CPU, shrink the caches and the model training (``--cache-size``, ``--world-cache-size``, ``--model-epochs``).

    python examples/train_shacpp.py --task dispersion --n-agents 3 --frames 2_000_000
"""

from __future__ import annotations

import argparse
import functools
import math

import torch
from common import GROUP, TrainingLog, common_parser, gaussian_actor, run
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule
from torchrl.envs import EnvBase
from torchrl.modules import ProbabilisticActor

from torchrl_shacpp.collectors import WindowCollector
from torchrl_shacpp.data import CoolDown, LearnedModel, make_stratified_cache, reward_items, value_items, world_items
from torchrl_shacpp.envs import make_vmas_env
from torchrl_shacpp.modules import (
    AgentSetTransformer,
    AxisAttentionWorldModel,
    TransformerRewardModel,
    window_world_model,
)
from torchrl_shacpp.objectives import RewardModelLoss, SHACActorLoss, TDLambdaValueLoss, WorldModelLoss
from torchrl_shacpp.optim import FiniteGradientStep

OBSERVATION = (GROUP, "observation")
ACTION = (GROUP, "action")
REWARD = (GROUP, "reward")
VALUE_TARGET = (GROUP, "value_target")
PREDICTED_REWARD = (GROUP, "predicted_reward")


def agent_features(env: EnvBase) -> tuple[int, int]:
    """Per-agent observation and action features."""
    return env.observation_spec[OBSERVATION].shape[-1], env.full_action_spec[ACTION].shape[-1]


def make_policy(env: EnvBase, action_std: float, learn_std: bool) -> ProbabilisticActor:
    """Agent-set transformer policy μ(o) (dropout 0.1, as the authors') with a state-independent Gaussian scale."""
    obs_dim, action_dim = agent_features(env)
    return gaussian_actor(AgentSetTransformer(obs_dim, action_dim, dropout=0.1), env, action_std, learn_std)


def make_critic(env: EnvBase) -> TensorDictModule:
    """Agent-set transformer critic: one value per agent, each agent attending to all agents' observations."""
    obs_dim, _ = agent_features(env)
    return TensorDictModule(AgentSetTransformer(obs_dim, 1), in_keys=[OBSERVATION], out_keys=[(GROUP, "state_value")])


def make_world_model(env: EnvBase, horizon: int) -> TensorDictModule:
    """Axis-attention world model ô_{1..h} = F(o_0, a_{0..h-1}), on the window contract of the losses."""
    return window_world_model(AxisAttentionWorldModel(*agent_features(env), horizon), observation_key=OBSERVATION)


def make_reward_model(env: EnvBase) -> TensorDictModule:
    """Transformer reward model r̂_t = R(o_t, a_t), one reward per agent (as the authors')."""
    return TensorDictModule(TransformerRewardModel(*agent_features(env)), in_keys=[OBSERVATION, ACTION], out_keys=[PREDICTED_REWARD])


def make_learned_models(
    env: EnvBase, value_loss: TDLambdaValueLoss, args: argparse.Namespace
) -> tuple[list[LearnedModel], TensorDictModule, TensorDictModule]:
    """The world, reward and value models with their losses and caches; and the world and reward modules."""
    world_model, reward_model = make_world_model(env, args.window), make_reward_model(env)
    world_loss, reward_loss = WorldModelLoss(world_model), RewardModelLoss(reward_model)
    world_loss.set_keys(observation=OBSERVATION)
    reward_loss.set_keys(reward=REWARD, predicted_reward=PREDICTED_REWARD)
    cache = functools.partial(make_stratified_cache, batch_size=args.minibatch)
    keys = dict(observation_key=OBSERVATION, action_key=ACTION, reward_key=REWARD)
    models = [
        LearnedModel("world", world_loss, cache(args.world_cache_size or args.cache_size, args.world_bins),
                     functools.partial(world_items, **keys), lr=args.lr),
        LearnedModel("reward", reward_loss, cache(args.cache_size, args.reward_bins, score_key=("next", *REWARD)),
                     functools.partial(reward_items, **keys), lr=args.lr),
        LearnedModel("value", value_loss, cache(args.cache_size, args.value_bins, score_key=VALUE_TARGET),
                     functools.partial(value_items, observation_key=OBSERVATION, value_target_key=VALUE_TARGET),
                     lr=args.lr),
    ]  # fmt: skip
    return models, world_model, reward_model


def make_actor_loss(
    env: EnvBase,
    policy: ProbabilisticActor,
    critic: TensorDictModule,
    value_params: TensorDictBase,
    world_model: TensorDictModule,
    reward_model: TensorDictModule,
    gamma: float,
) -> SHACActorLoss:
    """The SHAC++ objective: rewards and bootstrap values on the world model's predictions."""
    action_spec = env.full_action_spec[ACTION]
    actor_loss = SHACActorLoss(
        policy,
        critic,
        gamma=gamma,
        value_params=value_params,
        action_low=action_spec.space.low[0],  # drop the env batch dim: [n_agents, action_dim]
        action_high=action_spec.space.high[0],
        reward_model=reward_model,
        world_model=world_model,
    )
    actor_loss.set_keys(reward=REWARD, value=(GROUP, "state_value"), loc=(GROUP, "loc"),
                        predicted_reward=PREDICTED_REWARD)  # fmt: skip
    return actor_loss


def train(args: argparse.Namespace) -> list[dict]:
    """Trains SHAC++ as the module docstring says; returns the curve's rows (also written under ``args.out``)."""
    # The simulator needs no gradient: VMAS's own scenarios, also for transport and sampling.
    env_kwargs = dict(n_agents=args.n_agents, max_steps=args.max_steps, device=args.device,
                      differentiable_reward=False, **dict(args.scenario))  # fmt: skip
    env = make_vmas_env(args.task, num_envs=args.num_envs, seed=args.seed, **env_kwargs)
    eval_env = make_vmas_env(args.task, num_envs=args.eval_envs, seed=args.seed + 1, **env_kwargs)
    policy, critic = make_policy(env, args.action_std, args.learn_std), make_critic(env)

    value_loss = TDLambdaValueLoss(critic, gamma=args.gamma, lmbda=args.lmbda, use_target_network=False)
    value_loss.set_keys(reward=REWARD, value=(GROUP, "state_value"), value_target=VALUE_TARGET)
    models, world_model, reward_model = make_learned_models(env, value_loss, args)
    actor_loss = make_actor_loss(
        env, policy, critic, value_loss.bootstrap_params, world_model, reward_model, args.gamma
    )
    actor_step = FiniteGradientStep(torch.optim.Adam(actor_loss.parameters(), lr=args.lr), max_grad_norm=1.0)
    cooldown = CoolDown(every=args.train_every, epochs=args.model_epochs)
    collector = WindowCollector(
        env, policy, window_length=args.window, total_frames=args.frames, reset_every=args.reset_every, graph="policy"
    )
    log = TrainingLog(args, eval_env, policy, f"SHAC++ {args.task} n={args.n_agents}")
    model_losses = {model.name: math.nan for model in models}
    for index, window in enumerate(collector):
        losses = actor_loss(window)
        actor_info = actor_step(losses["loss_actor"] + losses["loss_action_bound"])

        window = window.detach()
        window[VALUE_TARGET] = value_loss.value_targets(window)
        for model in models:
            model.store(window)
        if cooldown.should_train(index):
            model_losses = {model.name: model.fit(cooldown) for model in models}

        model_columns = lambda: {  # noqa: E731
            **{f"loss_{name}": loss for name, loss in model_losses.items()},
            **{f"skipped_{model.name}_steps": model.step.skipped_steps for model in models},
        }
        if log.window_done(index, window, actor_info, actor_step, model_columns):
            break
    collector.shutdown()
    return log.close()


def parser() -> argparse.ArgumentParser:
    parser = common_parser(__doc__, task="dispersion", out="runs/shacpp")
    parser.add_argument("--cache-size", type=int, default=30_000, help="value and reward cache items (paper: 30000)")
    parser.add_argument(
        "--world-cache-size", type=int, default=None,
        help="windows in the world cache (default: --cache-size, as the paper)",
    )  # fmt: skip
    parser.add_argument("--world-bins", type=int, default=25, help="return bins of the world cache (paper: 25)")
    parser.add_argument("--reward-bins", type=int, default=9, help="reward bins of the reward cache (paper: 9)")
    parser.add_argument("--value-bins", type=int, default=9, help="λ-target bins of the value cache (paper: 9)")
    parser.add_argument("--train-every", type=int, default=10, help="train the models every C windows (paper: 10)")
    parser.add_argument("--model-epochs", type=int, default=10, help="passes over each cache per training (paper: 10)")
    parser.add_argument("--minibatch", type=int, default=1000, help="model minibatch size (paper: 1000)")
    return parser


if __name__ == "__main__":
    run(train, parser())
