"""Can a reward model learn transport's approach potential as a shaped reward? Per ``approach_blend`` β, a table.

With ``approach_reward=true`` (:class:`~torchrl_shacpp.envs.DifferentiableTransport`) the reward is VMAS's plus
:math:`\\Phi_t - \\Phi_{t-1}`. SHAC++ sees that part only through a learned reward model :math:`R(o, a)`. This collects
transitions of transport n=3 under a noisy push policy (each agent heads for the package, ``--push`` of the unit
direction plus unit Gaussian noise, clamped to the action box), fits an MLP on the shaping part
:math:`\\Phi_t - \\Phi_{t-1}` from all agents' observations and actions (80% of the transitions, standardised inputs,
Adam), and reports its held-out squared error, on all steps and split by whether some agent's target jumped by more
than ``--jump`` in the step (the hard switch from a waypoint to the push point). Beside it, the task return (VMAS's
reward) of a scripted controller that follows :math:`\\nabla\\Phi` at full speed, which shows that the targets still
lead the agents to push the package home.

    python benchmarks/transport_shaping_fit.py --blend 0 0.025 0.05 0.1 --out benchmarks/results/transport_shaping_fit.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import vmas
from torch import Tensor

from torchrl_shacpp.envs import DifferentiableTransport


TITLE = "# Can a reward model learn transport's approach potential as a shaped reward?"


def make_env(blend: float, num_envs: int, seed: int):
    return vmas.make_env(
        DifferentiableTransport(), num_envs=num_envs, seed=seed, n_agents=3, approach_reward=True,
        approach_blend=blend,
    )  # fmt: skip


def targets(env) -> Tensor:
    """[n_agents, B, 2] each agent's approach target."""
    scenario = env.scenario
    package = scenario.packages[0]
    return torch.stack([scenario._approach_target(package, agent.state.pos) for agent in env.agents])


def collect(blend: float, num_envs: int, steps: int, push: float, jump: float, seed: int):
    """Inputs (all agents' observations and actions), shaping rewards and jump flags of ``num_envs × steps`` steps."""
    env = make_env(blend, num_envs, seed)
    observations = env.reset()
    generator = torch.Generator().manual_seed(seed)
    package = env.scenario.packages[0]
    inputs, shaping, jumped, before = [], [], [], targets(env)
    for _ in range(steps):
        actions = []
        for agent in env.agents:
            towards = package.state.pos - agent.state.pos
            noise = torch.randn(num_envs, 2, generator=generator)
            actions.append((push * towards / towards.norm(dim=-1, keepdim=True) + noise).clamp(-1, 1))
        inputs.append(torch.cat([*observations, *actions], dim=-1))
        observations, rewards, _, infos = env.step(actions)
        shaping.append(rewards[0] - infos[0]["task_reward"])
        after = targets(env)
        jumped.append((after - before).norm(dim=-1).amax(0) > jump)
        before = after
    return torch.cat(inputs), torch.cat(shaping), torch.cat(jumped)


def held_out_errors(inputs: Tensor, shaping: Tensor, fit_steps: int, seed: int) -> tuple[Tensor, Tensor]:
    """Squared errors on the last 20% of the (shuffled) transitions of an MLP fitted on the first 80%, and their
    indices."""
    torch.manual_seed(seed)
    order = torch.randperm(len(inputs))
    inputs, shaping = inputs[order], shaping[order]
    split = int(0.8 * len(inputs))
    mean, std = inputs[:split].mean(0), inputs[:split].std(0) + 1e-6
    inputs = (inputs - mean) / std
    hidden = 256
    net = torch.nn.Sequential(
        torch.nn.Linear(inputs.shape[1], hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
        torch.nn.Linear(hidden, 1),
    )  # fmt: skip
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(fit_steps):
        batch = torch.randint(split, (512,))
        loss = (net(inputs[batch]).squeeze(-1) - shaping[batch]).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return (net(inputs[split:]).squeeze(-1) - shaping[split:]).square(), order[split:]


def scripted_task_return(blend: float, num_envs: int, steps: int, seed: int) -> float:
    """Mean task return of agents that each step move at full speed along :math:`\\nabla\\Phi`."""
    env = make_env(blend, num_envs, seed)
    env.reset()
    scenario = env.scenario
    package = scenario.packages[0]
    total = torch.zeros(num_envs)
    for _ in range(steps):
        positions = [agent.state.pos.detach().requires_grad_(True) for agent in env.agents]
        gradients = torch.autograd.grad(scenario._approach_potential(package, positions).sum(), positions)
        _, _, _, infos = env.step([g / g.norm(dim=-1, keepdim=True).clamp_min(1e-6) for g in gradients])
        total += infos[0]["task_reward"]
    return total.mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blend", type=float, nargs="+", default=[0.0, 0.025, 0.05, 0.1])
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100, help="steps collected per env")
    parser.add_argument("--push", type=float, default=0.6, help="the push policy's weight on the package direction")
    parser.add_argument("--jump", type=float, default=0.1, help="a target move that counts as a jump")
    parser.add_argument("--fit-steps", type=int, default=3000)
    parser.add_argument("--scripted-steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    header = [
        "β (approach_blend)", "steps with a target jump", "shaping variance", "held-out MSE (R²)",
        "MSE on steps without a jump (their variance)", "MSE on jump steps (their variance)",
        f"scripted ∇Φ controller's task return, {args.scripted_steps} steps",
    ]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for blend in args.blend:
        inputs, shaping, jumped = collect(blend, args.num_envs, args.steps, args.push, args.jump, args.seed)
        errors, held_out = held_out_errors(inputs, shaping, args.fit_steps, args.seed)
        target, jumps = shaping[held_out], jumped[held_out]

        def cell(mask: Tensor) -> str:
            if mask.sum() < 2:
                return "–"
            return f"{errors[mask].mean():.2e} ({target[mask].var():.2e})"

        r2 = 1 - errors.mean() / target.var()
        lines.append(
            f"| {blend:g} | {jumps.float().mean():.1%} | {target.var():.2e} | {errors.mean():.2e} ({r2:.2f}) | "
            f"{cell(~jumps)} | {cell(jumps)} | "
            f"{scripted_task_return(blend, args.num_envs, args.scripted_steps, args.seed):.2f} |"
        )
    command = " ".join(["python benchmarks/transport_shaping_fit.py", *sys.argv[1:]])
    text = "\n".join([TITLE, "", __doc__.split("\n\n")[1].replace("\n", " "), "", "```", command, "```", "", *lines])
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
