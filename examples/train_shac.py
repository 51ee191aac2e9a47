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
import csv
import math
import time
from pathlib import Path

import torch
from tensordict.nn import TensorDictModule
from tensordict.nn.distributions import AddStateIndependentNormalScale
from torch import nn
from torchrl.envs import EnvBase, ExplorationType, set_exploration_type
from torchrl.modules import IndependentNormal, MultiAgentMLP, ProbabilisticActor
from torchrl.objectives import SoftUpdate
from tqdm import tqdm

from torchrl_shacpp.collectors import WindowCollector
from torchrl_shacpp.envs import make_vmas_env
from torchrl_shacpp.objectives import SHACActorLoss, TDLambdaValueLoss
from torchrl_shacpp.optim import FiniteGradientStep

GROUP = "agents"


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
    """Decentralised policy μ(o_i) with a state-independent Gaussian scale; the env clamps actions to the box."""
    action_dim = env.full_action_spec[GROUP, "action"].shape[-1]
    scale = AddStateIndependentNormalScale(action_dim, make_param=learn_std, init_value=math.log(action_std))
    module = TensorDictModule(
        nn.Sequential(agent_mlp(env, action_dim, hidden, centralized=False), scale),
        in_keys=[(GROUP, "observation")],
        out_keys=[(GROUP, "loc"), (GROUP, "scale")],
    )
    return ProbabilisticActor(
        module,
        in_keys={"loc": (GROUP, "loc"), "scale": (GROUP, "scale")},
        out_keys=[(GROUP, "action")],
        distribution_class=IndependentNormal,
    )


def make_critic(env: EnvBase, hidden: int) -> TensorDictModule:
    """Centralised critic over all agents' observations, one value per agent (as MAPPO's)."""
    return TensorDictModule(
        agent_mlp(env, 1, hidden, centralized=True),
        in_keys=[(GROUP, "observation")],
        out_keys=[(GROUP, "state_value")],
    )


@torch.no_grad()
def evaluate(env: EnvBase, policy: ProbabilisticActor, steps: int) -> float:
    """Mean over envs of the first episode's undiscounted return (mean over agents), deterministic policy."""
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        rollout = env.rollout(steps, policy, break_when_any_done=False)
    reward = rollout["next", GROUP, "reward"].mean(-2).squeeze(-1)  # [B, T]
    done = rollout["next", "done"].squeeze(-1)
    in_first_episode = (done.cumsum(-1) - done.long()) == 0
    return (reward * in_first_episode).sum(-1).mean().item()


def save_curve(rows: list[dict], out: Path, title: str) -> None:
    with open(out / "curve.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["frames"] for r in rows], [r["eval_return"] for r in rows], marker="o")
    ax.set_xlabel("frames (env steps)")
    ax.set_ylabel("deterministic evaluation return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=120)
    plt.close(fig)


def train(args: argparse.Namespace) -> list[dict]:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
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

    rows: list[dict] = []
    started = time.perf_counter()
    progress = tqdm(total=args.frames, unit="frames", disable=args.quiet)
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

        frames = (index + 1) * collector.frames_per_batch
        progress.update(collector.frames_per_batch)
        out_of_time = time.perf_counter() - started > 60 * args.max_minutes
        if index % args.eval_every == 0 or frames >= args.frames or out_of_time:
            row = {
                "frames": frames,
                "windows": index + 1,
                "seconds": round(time.perf_counter() - started, 1),
                "eval_return": evaluate(eval_env, policy, args.max_steps),
                "train_reward": window["next", GROUP, "reward"].mean().item(),
                "actor_grad_norm": actor_info["grad_norm"],
                "skipped_actor_steps": actor_step.skipped_steps,
            }
            rows.append(row)
            progress.set_postfix(eval_return=f"{row['eval_return']:.3f}", grad=f"{row['actor_grad_norm']:.2g}")
            save_curve(rows, args.out, f"SHAC {args.task} n={args.n_agents}")
            torch.save(policy.state_dict(), args.out / "policy.pt")
        if out_of_time:
            break
    progress.close()
    collector.shutdown()
    eval_env.close()
    return rows


def scenario_kwarg(text: str) -> tuple[str, float | int]:
    """``"key=value"`` to ``(key, number)``."""
    key, _, value = text.partition("=")
    if not key or not value:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    number = float(value)
    return key, int(number) if number.is_integer() and "." not in value else number


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="transport", help="transport or sampling (differentiable rewards)")
    parser.add_argument("--n-agents", type=int, default=3)
    parser.add_argument(
        "--scenario", type=scenario_kwarg, action="append", default=[], metavar="KEY=VALUE",
        help="scenario kwarg, repeatable, e.g. --scenario approach_coef=0.5 (transport) or lookahead_coef=1 (sampling)",
    )  # fmt: skip
    parser.add_argument("--num-envs", type=int, default=512, help="parallel envs B (paper: 512)")
    parser.add_argument("--window", type=int, default=32, help="window length h (paper: 32)")
    parser.add_argument("--frames", type=int, default=1_000_000, help="env steps to train for")
    parser.add_argument("--max-steps", type=int, default=100, help="episode time limit")
    parser.add_argument("--reset-every", type=int, default=10, help="reset all envs every K windows (paper: 10)")
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--lmbda", type=float, default=0.95)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--action-std", type=float, default=1.0, help="policy std (paper: variance 1)")
    parser.add_argument("--learn-std", action="store_true", help="learn a state-independent log-std")
    parser.add_argument("--target-alpha", type=float, default=0.2, help="Polyak weight on the old target critic")
    parser.add_argument("--critic-epochs", type=int, default=16)
    parser.add_argument("--critic-minibatches", type=int, default=4)
    parser.add_argument("--eval-every", type=int, default=20, help="windows between evaluations")
    parser.add_argument("--eval-envs", type=int, default=128)
    parser.add_argument("--max-minutes", type=float, default=math.inf, help="stop after this wall-clock time")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("runs/shac"))
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = train(args)
    print(f"final eval return {rows[-1]['eval_return']:.3f} after {rows[-1]['frames']} frames; wrote {args.out}")


if __name__ == "__main__":
    main()
