r"""Where does a checkpointed policy take its agents in a walled VMAS arena: to the food, or into the walls?

VMAS clamps an agent's position to the arena (``x_semidim``, ``y_semidim``: dispersion's ``pos_range``) and keeps its
velocity, so an agent pressed into a wall stays there and its push outward moves nothing: the simulator's Jacobian
of the position with respect to the action is 0 across the wall, in a corner across both, and a world model that
follows the simulator learns the same. A policy that runs its agents outward (dispersion's early policies do) then
gets no gradient to come back from the rewards or the critic.

This script restores a BenchMARL checkpoint (the run's overrides and ``experiment.restore_file=<checkpoint>``),
rolls its policy out on the evaluation env for one episode, deterministically and with its exploration noise, and
prints, by phase of the episode, the share of agent-steps at a wall (a position coordinate within ``--margin`` of
the arena's half-width) and in a corner (both), the policy mean's norm and its cosine with the agent's position
(1: straight outward), the mean distance from the centre, the share of rewarded agent-steps and the return earned in
the phase (per agent, over the envs; the phases' returns sum to the episode's, BenchMARL's evaluation return on one
episode per env).

With ``--windows N`` (a SHAC-family checkpoint), it also collects N batches with the run's collector, evaluates the
actor's objective :math:`L` on each of their windows as training does, and compares the return's gradient w.r.t. each
action element, :math:`h_i = M\, \partial L / \partial a_i`, between the elements whose coordinate is at its wall and
the others, relative to :math:`\bar g`, the mean over the windows of :math:`\operatorname{mean}_i M |\partial L /
\partial \mu_i|` (the scale ``algorithm.action_mean_relative`` keeps): the median and the share below each of
``--gates`` (what ``algorithm.action_mean_gate`` would let the control cost reach). With the one-pass world model the
steps after a window's first episode end have :math:`h = 0` (the objective does not credit them).

Example (``results/learning_vs_mappo/dispersion_n3_walls/``)::

    python benchmarks/arena_walls.py --checkpoint <run>/checkpoints/checkpoint_61440.pt <the run's overrides>
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from benchmarl_experiment import policy_rollouts, restore_experiment  # noqa: E402


def phases(steps: int) -> list[tuple[int, int]]:
    """The episode's first tenth, the rest of its first third, its middle third, and the rest."""
    cuts = sorted({0, max(1, steps // 10), max(2, steps // 3), max(3, 2 * steps // 3), steps})
    return [(start, end) for start, end in zip(cuts[:-1], cuts[1:]) if start < steps]


def wall_rows(rollout, half_width: float, margin: float, position: slice, group: str) -> list[dict[str, float]]:
    """Per phase of ``rollout`` (``[env, time]``): the share of agent-steps at a wall and in a corner, the mean's norm
    and its cosine with the position, the distance from the centre, the share of rewarded agent-steps and the phase's
    return per agent, summed over its steps and averaged over the envs and agents."""
    observation = rollout[group, "observation"]
    pos = observation[..., position]
    loc = rollout[group, "loc"]
    reward = rollout["next", group, "reward"].squeeze(-1)
    at_edge = pos.abs() >= half_width - margin
    radius = pos.norm(dim=-1)
    outward = (loc * pos).sum(-1) / (loc.norm(dim=-1) * radius).clamp_min(1e-9)
    rows = []
    for start, end in phases(observation.shape[1]):
        steps = slice(start, end)
        rows.append({
            "steps": f"{start}-{end}",
            "at_wall": at_edge[:, steps].any(-1).float().mean().item(),
            "in_corner": at_edge[:, steps].all(-1).float().mean().item(),
            "mean_norm": loc[:, steps].norm(dim=-1).mean().item(),
            "mean_vs_outward": outward[:, steps].mean().item(),
            "radius": radius[:, steps].mean().item(),
            "rewarded": (reward[:, steps] > 0).float().mean().item(),
            "return": reward[:, steps].sum(1).mean().item(),
        })  # fmt: skip
    return rows


def gradient_rows(
    experiment, batches: int, half_width: float, margin: float, position: slice, group: str, gates: list[float]
) -> list[dict[str, float]]:
    """The return's gradient w.r.t. the actions at their wall and elsewhere on the windows of ``batches`` collections,
    relative to the mean's mean gradient ḡ: each set's share of the elements, median |h| / ḡ and share below each
    gate."""
    update = experiment.algorithm.update
    group_update = update.groups[group]
    keys = group_update.actor_loss.tensor_keys
    collections = iter(experiment.collector)
    mean_scales, action_gradients, at_wall = [], [], []
    for _ in range(batches):
        for window in update.split(next(collections)):
            differentiable = group_update.source.differentiable_window(window)
            loc, action = differentiable.get(keys.loc), differentiable.get(keys.action)
            if action.shape[-1] != position.stop - position.start:
                raise SystemExit(f"The actions have {action.shape[-1]} components, the position slice {position}.")
            loss = group_update.actor_loss(differentiable)["loss_actor"]
            mean_gradient, action_gradient = torch.autograd.grad(loss, [loc, action], materialize_grads=True)
            mean_scales.append(mean_gradient.abs().mean() * loc.numel())
            action_gradients.append((action_gradient.abs() * loc.numel()).flatten())
            at_wall.append((window.get((group, "observation"))[..., position].abs() >= half_width - margin).flatten())
    scale = torch.stack(mean_scales).mean()
    relative, at_wall = torch.cat(action_gradients) / scale, torch.cat(at_wall)
    rows = []
    for name, elements in (("at its wall", at_wall), ("elsewhere", ~at_wall)):
        if elements.any():
            share, median = elements.float().mean().item(), relative[elements].median().item()
            row = {"elements": name, "share": share, "median": median}
            row.update({f"below {gate}": (relative[elements] < gate).float().mean().item() for gate in gates})
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a BenchMARL checkpoint_<frames>.pt")
    parser.add_argument("--margin", type=float, default=0.02, help="how close to the half-width counts as the wall")
    parser.add_argument("--position", default="0:2", help="the observation's own-position slice (dispersion: 0:2)")
    parser.add_argument("--group", default="agents")
    parser.add_argument("--seed", type=int, default=0, help="the rollouts' random stream")
    parser.add_argument("--windows", type=int, default=0, help="collections whose windows' action gradients to read")
    parser.add_argument("--gates", type=float, nargs="+", default=[0.03, 0.1, 0.3], help="|h| / ḡ thresholds")
    parser.add_argument("overrides", nargs="*", help="the run's BenchMARL overrides")
    args = parser.parse_args()
    position = slice(*(int(bound) for bound in args.position.split(":")))
    experiment, task_name = restore_experiment(args.checkpoint, args.overrides)
    env = experiment.test_env
    half_width = env.scenario.world.x_semidim
    if half_width is None:
        raise SystemExit(f"{task_name}'s arena has no walls (x_semidim is None): nothing to measure.")
    print(f"{args.checkpoint.name}: {task_name}, {env.batch_size[0]} envs, arena half-width {half_width}\n")
    columns = ["at a wall", "in a corner", "mean's norm", "mean vs outward", "from centre", "rewarded", "return"]
    print("| actions | steps | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for actions, rollout in policy_rollouts(experiment, args.seed):
        rows = wall_rows(rollout, half_width, args.margin, position, args.group)
        for row in rows:
            cells = [f"{value:.2f}" if name not in ("rewarded", "return") else f"{value:.4f}"
                     for name, value in row.items() if name != "steps"]  # fmt: skip
            print(f"| {actions} | {row['steps']} | " + " | ".join(cells) + " |")
        episode_return = sum(row["return"] for row in rows)
        blanks = [""] * (len(columns) - 1)
        print("| " + " | ".join([actions, "episode", *blanks, f"{episode_return:.4f}"]) + " |")
    if args.windows:
        if not hasattr(experiment.algorithm, "update"):
            raise SystemExit("--windows reads the actor objective of a SHAC, SHAC+ or SHAC++ checkpoint.")
        torch.manual_seed(args.seed)
        rows = gradient_rows(experiment, args.windows, half_width, args.margin, position, args.group, args.gates)
        print(f"\nthe return's gradient w.r.t. the actions, |h| / ḡ, on {args.windows} collections' windows\n")
        print("| action elements | share | median | " + " | ".join(f"below {gate}" for gate in args.gates) + " |")
        print("|---|---|---|" + "---|" * len(args.gates))
        for row in rows:
            print("| " + " | ".join([row.pop("elements")] + [f"{value:.2f}" for value in row.values()]) + " |")


if __name__ == "__main__":
    sys.exit(main())
