"""SHAC on a differentiable VMAS task, in plain TorchRL.

Each iteration collects one window of ``--window`` steps on ``--num-envs`` parallel envs with the simulator's
autograd graph, takes one actor step on the SHAC window objective (gradients through VMAS), then fits the
critic to TD(λ) targets of the same window. A deterministic evaluation runs every ``--eval-every`` windows.
The return-vs-frames curve (``<out>/curve.csv``, ``<out>/curve.png``) and the policy's state dict
(``<out>/policy.pt``) are written at every evaluation.

    python examples/train_shac.py --task transport --n-agents 3 --frames 2_000_000
"""

from __future__ import annotations

import argparse
import math

import torch
from common import GROUP, TrainingLog, common_parser, gaussian_actor, run
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.envs import EnvBase
from torchrl.modules import MultiAgentMLP, ProbabilisticActor
from torchrl.objectives import SoftUpdate

from torchrl_shacpp.collectors import WindowCollector
from torchrl_shacpp.envs import make_vmas_env
from torchrl_shacpp.objectives import SHACActorLoss, TDLambdaValueLoss
from torchrl_shacpp.optim import FiniteGradientStep


def agent_mlp(env: EnvBase, n_outputs: int, hidden: int, centralized: bool) -> MultiAgentMLP:
    """A two-hidden-layer tanh MLP with parameters shared by the agents (inputs: one or all agents' observations)."""
    n_agents, obs_dim = env.observation_spec[GROUP, "observation"].shape[-2:]
    return MultiAgentMLP(
        n_agent_inputs=obs_dim,
        n_agent_outputs=n_outputs,
        n_agents=n_agents,
        centralized=centralized,
        share_params=True,
        depth=2,
        num_cells=hidden,
        activation_class=nn.Tanh,
    )


def make_policy(env: EnvBase, hidden: int, action_std: float, learn_std: bool) -> ProbabilisticActor:
    """Decentralised policy μ(o_i) with a state-independent Gaussian scale."""
    action_dim = env.full_action_spec[GROUP, "action"].shape[-1]
    return gaussian_actor(agent_mlp(env, action_dim, hidden, centralized=False), env, action_std, learn_std)


def make_critic(env: EnvBase, hidden: int) -> TensorDictModule:
    """Centralised critic over all agents' observations, one value per agent (as MAPPO's)."""
    return TensorDictModule(
        agent_mlp(env, 1, hidden, centralized=True),
        in_keys=[(GROUP, "observation")],
        out_keys=[(GROUP, "state_value")],
    )


def train(args: argparse.Namespace) -> list[dict]:
    env_kwargs = dict(n_agents=args.n_agents, max_steps=args.max_steps, device=args.device, **dict(args.scenario))
    env = make_vmas_env(args.task, num_envs=args.num_envs, seed=args.seed, **env_kwargs)
    eval_env = make_vmas_env(args.task, num_envs=args.eval_envs, seed=args.seed + 1, **env_kwargs)
    policy = make_policy(env, args.hidden, args.action_std, args.learn_std)
    critic = make_critic(env, args.hidden)

    value_loss = TDLambdaValueLoss(critic, gamma=args.gamma, lmbda=args.lmbda, use_target_network=True)
    value_loss.set_keys(reward=(GROUP, "reward"), value=(GROUP, "state_value"), value_target=(GROUP, "value_target"))
    target_update = SoftUpdate(value_loss, tau=1 - args.target_alpha)
    action_spec = env.full_action_spec[GROUP, "action"]
    actor_loss = SHACActorLoss(
        policy,
        critic,
        gamma=args.gamma,
        value_params=value_loss.bootstrap_params,
        action_low=action_spec.space.low[0],  # drop the env batch dim: [n_agents, action_dim]
        action_high=action_spec.space.high[0],
    )
    actor_loss.set_keys(reward=(GROUP, "reward"), value=(GROUP, "state_value"), loc=(GROUP, "loc"))

    actor_step = FiniteGradientStep(torch.optim.Adam(actor_loss.parameters(), lr=args.lr), max_grad_norm=1.0)
    critic_step = FiniteGradientStep(torch.optim.Adam(value_loss.parameters(), lr=args.lr))
    collector = WindowCollector(
        env, policy, window_length=args.window, total_frames=args.frames, reset_every=args.reset_every
    )
    log = TrainingLog(args, eval_env, policy, f"SHAC {args.task} n={args.n_agents}")
    for index, window in enumerate(collector):
        losses = actor_loss(window)
        actor_info = actor_step(losses["loss_actor"] + losses["loss_action_bound"])

        window = window.detach()
        window[GROUP, "value_target"] = value_loss.value_targets(window)
        flat = window.reshape(-1)
        for _ in range(args.critic_epochs):
            for batch in flat[torch.randperm(flat.numel())].split(math.ceil(flat.numel() / args.critic_minibatches)):
                critic_step(value_loss(batch)["loss_value"])
        target_update.step()

        if log.window_done(index, window, actor_info, actor_step):
            break
    collector.shutdown()
    return log.close()


def parser() -> argparse.ArgumentParser:
    parser = common_parser(__doc__, task="transport", out="runs/shac")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--target-alpha", type=float, default=0.2, help="Polyak weight on the old target critic")
    parser.add_argument("--critic-epochs", type=int, default=16)
    parser.add_argument("--critic-minibatches", type=int, default=4)
    return parser


if __name__ == "__main__":
    run(train, parser())
