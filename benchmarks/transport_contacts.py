r"""Which face of transport's package does a checkpointed policy push: towards the goal, or away from it?

Every learner of transport n=3 with the approach potential paid as reward dips below its first evaluation before it
learns (``results/learning_vs_mappo/transport_n3_64envs_shaped/``: SHAC++ -0.94 ± 0.19 at 122k frames, MAPPO -0.20
± 0.12), while a scripted controller following the potential's gradient never pushes the package away. VMAS's box
package is not rotatable, so an agent (a sphere of radius :math:`r`) touches it where the agent's distance to the box,
:math:`\lVert x - q\rVert` with :math:`q` the box's point closest to :math:`x`, is at most :math:`r`; the contact
pushes the package along :math:`-n`, :math:`n = (x - q) / \lVert x - q\rVert`. With :math:`u` the unit vector from
the package to its goal, a contact pushes *towards the goal* where :math:`-n \cdot u > 1/2`, *away* where
:math:`-n \cdot u < -1/2`, and *sideways* otherwise.

This script restores a BenchMARL checkpoint (the run's overrides and ``experiment.restore_file=<checkpoint>``), rolls
its policy out on the evaluation env for one episode, deterministically and with its exploration noise, and prints
by phase of the episode (``arena_walls.phases``): the share of agent-steps in contact with the package, the shares of
those contacts that push towards the goal, away and sideways, the median offset of the agents pushing away from the
package-goal line (:math:`|(x - p)\cdot u^\perp|`, in units of the package's half-side plus :math:`r`: below 1 the
agent sits in front of the package's goal face, where the blended potential's two waypoints meet,
``DifferentiableTransport``'s docstring) and the median cosine of their policy mean with :math:`-u` (1: driving
straight into the face), and the task return earned in the phase (VMAS's reward, the agents' info
``task_reward`` where the potential is paid, else the reward; per agent, summed over the phase's steps and averaged
over the envs).

Then it prints where the run's approach potential :math:`\Phi` (``DifferentiableTransport``, with the run's
``approach_path`` and ``approach_blend``) pulls an agent that touches the package's goal face, at offsets from the
package-goal line: the share of :math:`\nabla_x \Phi / \lVert \nabla_x \Phi \rVert` into the face (:math:`-u`;
what a follower of the potential pushes the package away with) and along it (:math:`u^\perp`; what takes it round);
0 and 0 where the potential does not pull (the blended ways' saddle on the line).

Example (``results/learning_vs_mappo/transport_n3_64envs_shaped/``)::

    python benchmarks/transport_contacts.py --checkpoint <run>/checkpoints/checkpoint_122880.pt <the run's overrides>
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import vmas
from tensordict import TensorDictBase

sys.path.insert(0, str(Path(__file__).parent))
from arena_walls import phases  # noqa: E402
from benchmarl_experiment import policy_rollouts, restore_experiment  # noqa: E402

from torchrl_shacpp.envs import DifferentiableTransport  # noqa: E402

#: VMAS transport's observation: the package's offset from its goal and from the agent (``transport.py``'s
#: ``observation``: ``[pos(2), vel(2), package - goal(2), package - agent(2), package_vel(2), on_goal(1)]``).
PACKAGE_FROM_GOAL, PACKAGE_FROM_AGENT = slice(4, 6), slice(6, 8)


def contact_faces(
    agent_from_package: torch.Tensor, to_goal: torch.Tensor, half_side: float, agent_radius: float, margin: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Per agent-step (leading dims of ``agent_from_package`` ``[..., 2]``, the agent's centre relative to the
    package's): whether it touches the package (its distance to the axis-aligned box of half-side ``half_side`` at
    most ``agent_radius + margin``), the cosine of the push it gives the package (:math:`-n`) with the unit vector
    ``to_goal``, and the agent's offset from the package-goal line, :math:`|x \cdot u^\perp|`."""
    closest = agent_from_package.clamp(-half_side, half_side)
    outward = agent_from_package - closest
    distance = outward.norm(dim=-1)
    # An agent whose centre is inside the box (a deep overlap): its normal is the nearer face's.
    inside = distance == 0
    axis = (half_side - agent_from_package.abs()).argmin(dim=-1, keepdim=True)
    face = torch.zeros_like(agent_from_package).scatter(-1, axis, 1.0) * agent_from_package.sign()
    normal = torch.where(inside.unsqueeze(-1), face, outward / distance.clamp_min(1e-12).unsqueeze(-1))
    touching = distance <= agent_radius + margin
    push_towards_goal = -(normal * to_goal).sum(-1)
    across = torch.stack([-to_goal[..., 1], to_goal[..., 0]], dim=-1)
    offset = (agent_from_package * across).sum(-1).abs()
    return touching, push_towards_goal, offset


def observed_contacts(
    observation: torch.Tensor, half_side: float, agent_radius: float, margin: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`contact_faces` read from transport observations ``[..., F]``: the unit vector from the package to its
    goal ``[..., 2]``, then whether each agent touches the package, its push's cosine with that vector and its offset
    from the package-goal line."""
    package_from_goal = observation[..., PACKAGE_FROM_GOAL]
    to_goal = -package_from_goal / package_from_goal.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    touching, push, offset = contact_faces(
        -observation[..., PACKAGE_FROM_AGENT], to_goal, half_side, agent_radius, margin
    )
    return to_goal, touching, push, offset


def contact_rows(
    rollout: TensorDictBase, group: str, half_side: float, agent_radius: float, margin: float
) -> list[dict[str, float]]:
    """Per phase of ``rollout`` (``[env, time]``): the share of agent-steps touching the package, the shares of the
    contacts that push towards the goal, away and sideways, the median offset from the package-goal line of the agents
    pushing away (in units of ``half_side + agent_radius``) and the median cosine of their policy mean with :math:`-u`
    (1: driving straight into the goal face; both NaN without any), and the phase's task return per agent."""
    observation = rollout[group, "observation"]
    to_goal, touching, push, offset = observed_contacts(observation, half_side, agent_radius, margin)
    # The policy mean's cosine with -u: for an agent on the goal face, how straight it drives into the package.
    loc = rollout[group, "loc"]
    into_face = -(loc * to_goal).sum(-1) / loc.norm(dim=-1).clamp_min(1e-12)
    info = rollout.get(("next", group, "info"), None)
    reward_key = ("next", group, "info", "task_reward") if info is not None and "task_reward" in info.keys() else None
    reward = rollout[reward_key or ("next", group, "reward")].reshape(touching.shape)
    rows = []
    for start, end in phases(observation.shape[1]):
        contacts = touching[:, start:end]
        towards, away = contacts & (push[:, start:end] > 0.5), contacts & (push[:, start:end] < -0.5)
        n = max(int(contacts.sum()), 1)
        rows.append(
            {
                "steps": f"{start}-{end}",
                "in contact": contacts.float().mean().item(),
                "towards the goal": towards.sum().item() / n,
                "away": away.sum().item() / n,
                "sideways": (contacts & ~towards & ~away).sum().item() / n,
                "away: offset": (offset[:, start:end][away].median() / (half_side + agent_radius)).item()
                if away.any()
                else float("nan"),
                "away: mean into it": into_face[:, start:end][away].median().item() if away.any() else float("nan"),
                "return": reward[:, start:end].sum(1).mean().item(),
            }
        )
    return rows


def goal_face_pull(
    approach_blend: float, offsets: list[float], approach_path: str = "waypoint"
) -> list[dict[str, float]]:
    r"""Per offset (in units of the package's half-side plus the agent radius, towards :math:`u^\perp`): where the
    approach potential pulls one agent touching the package's goal face, :math:`\nabla_x\Phi` by autograd through
    ``DifferentiableTransport``'s own potential (the package at the origin, its goal at (1, 0)), as its unit
    direction's components into the face and along it."""
    kwargs = {"approach_reward": True, "approach_blend": approach_blend, "approach_path": approach_path}
    env = vmas.make_env(DifferentiableTransport(), num_envs=len(offsets), n_agents=1, **kwargs)
    scenario = env.scenario
    package = scenario.packages[0]
    package.set_pos(torch.zeros(len(offsets), 2), batch_index=None)
    package.goal.set_pos(torch.tensor([[1.0, 0.0]]).expand(len(offsets), 2), batch_index=None)
    contact = scenario.push_offset  # the agent's centre when it touches a face: half a side plus its radius
    position = torch.tensor([[contact, contact * offset] for offset in offsets], requires_grad=True)
    (pull,) = torch.autograd.grad(scenario._approach_potential(package, [position]).sum(), position)
    direction = pull / pull.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return [
        {"offset": offset, "into the face": -direction[i, 0].item(), "along it": direction[i, 1].abs().item()}
        for i, offset in enumerate(offsets)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a BenchMARL checkpoint_<frames>.pt")
    parser.add_argument("--margin", type=float, default=0.005, help="how far beyond touching counts as contact")
    parser.add_argument("--group", default="agents")
    parser.add_argument("--seed", type=int, default=0, help="the rollouts' random stream")
    parser.add_argument("overrides", nargs="*", help="the run's BenchMARL overrides")
    args = parser.parse_args()
    experiment, task_name = restore_experiment(args.checkpoint, args.overrides)
    if "transport" not in task_name:
        raise SystemExit(f"{task_name} is not transport: the probe reads transport's package and observation.")
    env = experiment.test_env
    scenario = env.scenario
    package = scenario.packages[0]
    half_side = 0.5 * min(package.shape.length, package.shape.width)
    print(f"{args.checkpoint.name}: {task_name}, {env.batch_size[0]} envs, package half-side {half_side}\n")
    columns = ["in contact", "towards the goal", "away", "sideways", "away: offset", "away: mean into it", "return"]
    print("| actions | steps | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for actions, rollout in policy_rollouts(experiment, args.seed):
        rows = contact_rows(rollout, args.group, half_side, scenario.agent_radius, args.margin)
        for row in rows:
            cells = [f"{row[name]:.4f}" if name == "return" else f"{row[name]:.2f}" for name in columns]
            print(f"| {actions} | {row['steps']} | " + " | ".join(cells) + " |")
        total = sum(row["return"] for row in rows)
        blanks = [""] * (len(columns) - 1)
        print("| " + " | ".join([actions, "episode", *blanks, f"{total:.4f}"]) + " |")
    # After the rollouts: making another VMAS env moves the random streams their resets draw from.
    blend, path = getattr(scenario, "approach_blend", None), getattr(scenario, "approach_path", None)
    if blend is not None:
        print(f"\nthe approach potential's pull on an agent touching the goal face ({path=}, {blend=})\n")
        print("| offset | into the face | along it |\n|---|---|---|")
        for pull in goal_face_pull(blend, [0.0, 0.1, 0.25, 0.5, 0.75, 1.0], path):
            print(f"| {pull['offset']:.2f} | {pull['into the face']:.2f} | {pull['along it']:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
