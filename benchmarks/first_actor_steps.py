"""The evaluation return of a policy before training and after each of its first iterations, on one BenchMARL task.

Made to see whether an algorithm's first steps help or harm: the policy (deterministic, ``--episodes`` envs x
``--steps`` steps of the task's test env) is evaluated once at set-up and again after each of the first
``--iters`` BenchMARL iterations, on the experiment's own policy and test env. The return is per agent, summed over
the steps and averaged over envs and agents.

Usage (``benchmarks/results/first_actor_steps.md`` was made with the commands at its top)::

    python benchmarks/first_actor_steps.py --algorithm shac --task vmas/navigation --iters 10 \\
        --label "collisions off" --override task.collisions=false --out benchmarks/results/first_actor_steps.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from benchmarl.experiment import Experiment
from benchmarl.experiment.callback import Callback
from benchmarl_experiment import compose_experiment
from tensordict import TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type


def evaluation_return(experiment: Experiment, steps: int) -> float:
    """The deterministic policy's return per agent on the experiment's test env (all its envs, ``steps`` steps)."""
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        rollout = experiment.test_env.rollout(
            max_steps=steps, policy=experiment.policy, auto_cast_to_device=True, break_when_any_done=False
        )
    rewards = [rollout["next", group, "reward"] for group in experiment.group_map]
    return torch.stack([reward.sum(1).mean() for reward in rewards]).mean().item()


class EvaluateEveryIteration(Callback):
    """Evaluates at set-up and after every iteration's training (of the first group)."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps, self.returns = steps, []

    def on_setup(self) -> None:
        self.returns.append(evaluation_return(self.experiment, self.steps))

    def on_train_end(self, training_td: TensorDictBase, group: str) -> None:
        if group == next(iter(self.experiment.group_map)):
            self.returns.append(evaluation_return(self.experiment, self.steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithm", default="shac")
    parser.add_argument("--task", default="vmas/navigation")
    parser.add_argument("--preset", default="shacpp_cpu")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=32, help="evaluation envs")
    parser.add_argument("--steps", type=int, default=100, help="evaluation steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", default="", help="what this row varies, for the table")
    parser.add_argument("--override", nargs="*", default=[], help="more hydra overrides")
    parser.add_argument("--out", type=Path, required=True, help="a Markdown table this run adds a row to")
    args = parser.parse_args()
    overrides = [
        f"algorithm={args.algorithm}", f"experiment={args.preset}", f"experiment.max_n_iters={args.iters}",
        "experiment.evaluation=false", "experiment.loggers=[]", "experiment.save_folder=/tmp",
        f"experiment.evaluation_episodes={args.episodes}", f"seed={args.seed}", *args.override,
    ]  # fmt: skip
    callback = EvaluateEveryIteration(args.steps)
    experiment = compose_experiment(args.task, overrides, [callback])
    experiment.run()
    if not args.out.exists():
        args.out.write_text(
            "# The first iterations: evaluation return before training and after each iteration\n\n"
            f"Deterministic policy, {args.episodes} envs x {args.steps} steps, return per agent. Each row: "
            "`python benchmarks/first_actor_steps.py --algorithm A --task T --iters N --label L --override ...`.\n\n"
            "| algorithm | task | preset | label | overrides | before | after iterations 1, 2, 3, ... |\n"
            "|---|---|---|---|---|---:|---|\n"
        )
    before, *after = callback.returns
    row = (
        f"| {args.algorithm} | {args.task} | {args.preset} | {args.label} | `{' '.join(args.override)}` | "
        f"{before:.2f} | {', '.join(f'{value:.2f}' for value in after)} |"
    )
    with open(args.out, "a") as file:
        file.write(row + "\n")
    print(row, file=sys.stderr)


if __name__ == "__main__":
    main()
