"""How a trained policy's navigation episodes end: each agent's distance to its goal at the last step, the closest it
came, its speed there, and the collisions on the way, from a BenchMARL checkpoint, with the policy's deterministic
action and with its samples.

It tells apart the ways an evaluation return below MAPPO's can come about: agents that stop a little off their goals
(a precision gap), agents that reach their goals and leave them (an overshoot), and agents that never come near (a
deadlock or a detour). Navigation's observation holds ``pos - goal`` at features 4:6, so the distances are read off
the rollout; an agent is on its goal within the goal's radius (VMAS: half the agent's, 0.05; the arrival bonus needs
every agent there), and the episode ends once every agent is within the agent's radius (0.1) of its goal.

The checkpoint comes from a run with ``experiment.checkpoint_at_end=true`` (any algorithm; the run's ``.hydra`` folder
rebuilds its experiment through :func:`benchmarl.hydra_config.reload_experiment_from_file`):

    python benchmarks/navigation_endings.py runs/mappo_s0 runs/shacpp_s0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from benchmarl.hydra_config import reload_experiment_from_file
from tensordict import TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

import torchrl_shacpp.benchmarl  # noqa: F401  (registers the SHAC family's configs)

GOAL_FEATURES = slice(4, 6)
VELOCITY_FEATURES = slice(2, 4)
GOAL_RADIUS = 0.05  # the arrival bonus's radius
DONE_RADIUS = 0.1  # the episode ends once every agent is this close to its goal (VMAS: the agent's radius)
FAR = 0.2  # an agent's diameter


def latest_checkpoint(run: Path) -> Path:
    """The last checkpoint BenchMARL wrote under ``run``."""
    checkpoints = sorted(run.glob("**/checkpoints/checkpoint_*.pt"), key=lambda path: int(path.stem.split("_")[-1]))
    if not checkpoints:
        raise SystemExit(f"{run} holds no checkpoint: train it with experiment.checkpoint_at_end=true.")
    return checkpoints[-1]


def first_episodes(rollout: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
    """The step at which each env's first episode ends in a ``[episodes, steps]`` rollout (navigation terminates once
    every agent is within 0.1 of its goal, and the env then starts another episode), and the ``[episodes, steps]`` mask
    of that episode's steps."""
    done = rollout["next", "done"].reshape(*rollout.shape, -1).any(-1).clone()
    done[:, -1] = True
    end = done.float().argmax(dim=1)
    return end, torch.arange(rollout.shape[1]) <= end.unsqueeze(-1)


def endings(rollout: TensorDictBase, group: str = "agents") -> dict[str, float]:
    """The endings of each env's first episode in a ``[episodes, steps]`` navigation rollout, over episodes and
    agents."""
    end, steps = first_episodes(rollout)
    observation = rollout["next", group, "observation"]
    episodes = torch.arange(len(end))
    distance = observation[..., GOAL_FEATURES].norm(dim=-1)  # [episodes, steps, agents]
    start = rollout[group, "observation"][:, 0, :, GOAL_FEATURES].norm(dim=-1)
    final = distance[episodes, end]
    closest = distance.masked_fill(~steps.unsqueeze(-1), torch.inf).min(dim=1).values
    speed = observation[episodes, end][..., VELOCITY_FEATURES].norm(dim=-1)
    on_goal = final < GOAL_RADIUS
    in_episode = steps.unsqueeze(-1).float()
    reward = (rollout["next", group, "reward"].squeeze(-1) * in_episode).sum(dim=1).mean()
    collided = rollout["next", group, "info", "agent_collisions"].squeeze(-1) < 0
    return {
        "return": reward.item(),
        "every agent within 0.1 (episode ended)": (final < DONE_RADIUS).all(dim=-1).float().mean().item(),
        "steps": (end + 1).float().mean().item(),
        "start distance": start.mean().item(),
        "final distance": final.mean().item(),
        "final distance, median": final.median().item(),
        "on goal (0.05) at the end": on_goal.float().mean().item(),
        "within 0.1 at the end": (final < DONE_RADIUS).float().mean().item(),
        "within 0.2 at the end": (final < FAR).float().mean().item(),
        "reached, then left (>0.2)": ((closest < GOAL_RADIUS) & (final >= FAR)).float().mean().item(),
        "never within 0.2": (closest >= FAR).float().mean().item(),
        "final speed": speed.mean().item(),
        "collision steps per agent": (collided.float() * in_episode).sum(dim=1).mean().item(),
    }


def evaluate(run: Path, seed: int) -> dict[str, dict[str, float]]:
    """The endings of the evaluation episodes (the run's ``experiment.evaluation_episodes`` envs, its test env) of
    ``run``'s last checkpoint, per exploration type, the envs reset from ``seed`` for each."""
    experiment = reload_experiment_from_file(str(latest_checkpoint(run)))
    env, results = experiment.test_env, {}
    for name, exploration in (("deterministic", ExplorationType.DETERMINISTIC), ("sampled", ExplorationType.RANDOM)):
        env.set_seed(seed)
        torch.manual_seed(seed)
        with torch.no_grad(), set_exploration_type(exploration):
            rollout = env.rollout(
                experiment.max_steps, policy=experiment.policy, auto_cast_to_device=True, break_when_any_done=False
            )
        results[name] = endings(rollout)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="BenchMARL run folders, each with a checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="the evaluation envs' seed (the same for every run)")
    args = parser.parse_args()
    columns = {}
    for run in args.runs:
        for mode, values in evaluate(run, args.seed).items():
            columns[f"{run.name} ({mode})"] = values
    rows = next(iter(columns.values()))
    print("| | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for row in rows:
        print(f"| {row} | " + " | ".join(f"{values[row]:.3f}" for values in columns.values()) + " |")


if __name__ == "__main__":
    main()
