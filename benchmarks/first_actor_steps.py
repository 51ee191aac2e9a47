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
import functools
import sys
from pathlib import Path

import torch
from benchmarl.experiment import Experiment
from benchmarl.experiment.callback import Callback
from benchmarl_experiment import compose_experiment
from tensordict import TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type
from vmas.simulator.sensors import Lidar


def evaluation_return(experiment: Experiment, steps: int, part: str | None = None) -> str:
    """The deterministic policy's return per agent on the experiment's test env (all its envs, ``steps`` steps),
    formatted; with ``part``, the return of that reward part of the env's info (e.g. VMAS navigation's
    ``agent_collisions``) follows in brackets."""
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        rollout = experiment.test_env.rollout(
            max_steps=steps, policy=experiment.policy, auto_cast_to_device=True, break_when_any_done=False
        )

    def per_agent(key: str) -> float:
        values = [rollout["next", group, *key.split("/")] for group in experiment.group_map]
        return torch.stack([value.sum(1).mean() for value in values]).mean().item()

    text = f"{per_agent('reward'):.2f}"
    return f"{text} [{per_agent(f'info/{part}'):.2f}]" if part else text


class EvaluateEveryIteration(Callback):
    """Evaluates at set-up and after every iteration's training (of the first group)."""

    def __init__(self, steps: int, part: str | None = None) -> None:
        super().__init__()
        self.steps, self.part, self.returns = steps, part, []

    def on_setup(self) -> None:
        self.returns.append(evaluation_return(self.experiment, self.steps, self.part))

    def on_train_end(self, training_td: TensorDictBase, group: str) -> None:
        if group == next(iter(self.experiment.group_map)):
            self.returns.append(evaluation_return(self.experiment, self.steps, self.part))


def detach_output(method):
    """``method`` whose tensor output carries no gradient: what the exact gradient becomes without that path."""

    @functools.wraps(method)
    def detached(*args, **kwargs):
        return method(*args, **kwargs).detach()

    return detached


def load_with_detached_observations(load):
    """VMAS's scenario loader (a fresh module per environment) whose scenarios' observations carry no gradient."""

    @functools.wraps(load)
    def detached_load(name: str):
        module = load(name)
        module.Scenario.observation = detach_output(module.Scenario.observation)
        return module

    return detached_load


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
    parser.add_argument(
        "--detach-lidar", action="store_true", help="VMAS's lidar readings carry no gradient (its contacts still do)"
    )
    parser.add_argument(
        "--detach-observations", action="store_true",
        help="the VMAS scenario's observations carry no gradient: the policy's inputs, and the critic's at a bootstrap",
    )  # fmt: skip
    parser.add_argument(
        "--reward-part", help="a reward part in the env's info whose return follows each return in brackets"
    )
    args = parser.parse_args()
    if args.detach_lidar:
        Lidar.measure = detach_output(Lidar.measure)
    if args.detach_observations:
        # The module, not the list of names that vmas/__init__.py binds to the same attribute.
        scenarios = sys.modules["vmas.scenarios"]
        scenarios.load = load_with_detached_observations(scenarios.load)
    overrides = [
        f"algorithm={args.algorithm}", f"experiment={args.preset}", f"experiment.max_n_iters={args.iters}",
        "experiment.evaluation=false", "experiment.loggers=[]", "experiment.save_folder=/tmp",
        f"experiment.evaluation_episodes={args.episodes}", f"seed={args.seed}", *args.override,
    ]  # fmt: skip
    callback = EvaluateEveryIteration(args.steps, args.reward_part)
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
    flags = [*["--detach-lidar"] * args.detach_lidar, *["--detach-observations"] * args.detach_observations]
    flags += [f"--reward-part {args.reward_part}"] * bool(args.reward_part)
    row = (
        f"| {args.algorithm} | {args.task} | {args.preset} | {args.label} | `{' '.join([*flags, *args.override])}` | "
        f"{before} | {', '.join(after)} |"
    )
    with open(args.out, "a") as file:
        file.write(row + "\n")
    print(row, file=sys.stderr)


if __name__ == "__main__":
    main()
