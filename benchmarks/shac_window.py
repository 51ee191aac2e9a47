"""Cost of one SHAC window against raw VMAS stepping of the same window.

Measures, side by side in one process and interleaved round by round (this machine is noisy):

* ``vmas no-grad``: ``vmas.make_env`` stepped ``h`` times under ``torch.no_grad`` with the policy's actions;
* ``vmas grad``: the same with ``grad_enabled=True`` and the policy's actions carrying the graph, then one
  backward of ``-Σ rewards + 1e-3·Σ obs²`` (the observation term makes the backward traverse every step even
  where the reward has no graph);
* ``shac window``: :class:`WindowCollector` (graph through VMAS) + :class:`SHACActorLoss` + a guarded Adam step
  (forward, backward and optimiser step), with the same policy network.

Usage (the committed table in results/shac_window.md was made with this command)::

    python benchmarks/shac_window.py --task transport --n-agents 3 --num-envs 512 --window 32 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import vmas
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.modules import IndependentNormal, MultiAgentMLP, ProbabilisticActor

from torchrl_shacpp.collectors import WindowCollector
from torchrl_shacpp.envs import make_vmas_env
from torchrl_shacpp.objectives import SHACActorLoss
from torchrl_shacpp.optim import FiniteGradientStep
from torchrl_shacpp.trainers import actor_objective

GROUP = "agents"


class GaussianPolicy(nn.Module):
    """μ = MLP(o_i) with shared parameters and a fixed unit scale, as the SHAC++ paper's policy."""

    def __init__(self, n_agents: int, obs_dim: int, action_dim: int) -> None:
        super().__init__()
        self.mlp = MultiAgentMLP(obs_dim, action_dim, n_agents, centralized=False, share_params=True, depth=2,
                                 num_cells=64, activation_class=nn.Tanh)

    def forward(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc = self.mlp(observation)
        return loc, torch.ones_like(loc)


def raw_vmas_window(env, policy: GaussianPolicy, horizon: int, grad: bool) -> None:
    observations = env.reset()
    objective = 0.0
    with torch.set_grad_enabled(grad):
        for _ in range(horizon):
            loc, scale = policy(torch.stack(observations, dim=-2))
            actions = (loc + scale * torch.randn_like(loc)).clamp(-1, 1)
            observations, rewards, dones, _ = env.step(list(actions.unbind(-2)))
            if grad:
                objective = objective - torch.stack(rewards).sum() + 1e-3 * torch.stack(observations).pow(2).sum()
        if grad:
            objective.backward()


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="transport")
    parser.add_argument("--n-agents", type=int, default=3)
    parser.add_argument("--num-envs", type=int, default=512)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "shac_window.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    env = make_vmas_env(args.task, num_envs=args.num_envs, n_agents=args.n_agents, seed=0)
    n_agents, obs_dim = env.observation_spec[GROUP, "observation"].shape[-2:]
    action_dim = env.full_action_spec[GROUP, "action"].shape[-1]
    network = GaussianPolicy(n_agents, obs_dim, action_dim)
    policy = ProbabilisticActor(
        TensorDictModule(network, in_keys=[(GROUP, "observation")], out_keys=[(GROUP, "loc"), (GROUP, "scale")]),
        in_keys={"loc": (GROUP, "loc"), "scale": (GROUP, "scale")},
        out_keys=[(GROUP, "action")],
        distribution_class=IndependentNormal,
    )
    critic = TensorDictModule(
        MultiAgentMLP(obs_dim, 1, n_agents, centralized=True, share_params=True, depth=2, num_cells=64),
        in_keys=[(GROUP, "observation")],
        out_keys=[(GROUP, "state_value")],
    )
    spec = env.full_action_spec[GROUP, "action"]
    loss = SHACActorLoss(policy, critic, action_low=spec.space.low[0], action_high=spec.space.high[0])
    loss.set_keys(reward=(GROUP, "reward"), value=(GROUP, "state_value"), loc=(GROUP, "loc"))
    step = FiniteGradientStep(torch.optim.Adam(loss.parameters(), lr=1e-3), max_grad_norm=1.0)
    collector = WindowCollector(env, policy, window_length=args.window, reset_every=None)

    def shac_window() -> None:
        losses = loss(collector.rollout())
        step(actor_objective(losses))

    raw = {
        grad: vmas.make_env(args.task, num_envs=args.num_envs, continuous_actions=True, seed=0,
                            grad_enabled=grad, n_agents=args.n_agents)
        for grad in (False, True)
    }
    cases = {
        "vmas no-grad (step only)": lambda: raw_vmas_window(raw[False], network, args.window, grad=False),
        "vmas grad (step + backward)": lambda: raw_vmas_window(raw[True], network, args.window, grad=True),
        "shac window (collect + loss + backward + Adam step)": shac_window,
    }
    for fn in cases.values():  # warm-up
        fn()
    times = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            times[name].append(timed(fn))
    medians = {name: statistics.median(values) for name, values in times.items()}
    reference = medians["vmas grad (step + backward)"]
    frames = args.num_envs * args.window
    lines = [
        f"# One SHAC window vs raw VMAS stepping: {args.task}, n_agents={args.n_agents}, "
        f"B={args.num_envs}, h={args.window}",
        "",
        "Command: `python benchmarks/shac_window.py --task {} --n-agents {} --num-envs {} --window {} "
        "--repeats {} --threads {}`".format(args.task, args.n_agents, args.num_envs, args.window, args.repeats,
                                            args.threads),
        "",
        f"Median of {args.repeats} interleaved rounds after one warm-up round, torch threads = {args.threads}.",
        "",
        "| case | median s / window | env-steps/s | ratio to vmas grad |",
        "|---|---|---|---|",
    ]
    for name, median in medians.items():
        lines.append(f"| {name} | {median:.3f} | {frames / median:,.0f} | {median / reference:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
