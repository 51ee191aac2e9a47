"""BenchMARL callbacks that any algorithm can use (MAPPO included): the paper's early stopping, the evaluation's
reward split into the task's logged terms, and a restored run's evaluation history."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, List

import torch
from benchmarl.environments import TaskClass, VmasClass
from benchmarl.experiment.callback import Callback
from tensordict import TensorDictBase

#: Per-agent transport reward: 100 × the decrease of the package-goal distance (VMAS's ``shaping_factor``).
TRANSPORT_SHAPING = 100.0
#: The VMAS tasks whose maximum reward the paper defines (sampling's depends on the Gaussians: it has none).
PAPER_MAX_REWARD_TASKS = ("dispersion", "discovery", "transport")


def has_paper_max_episode_reward(task: TaskClass) -> bool:
    """Whether :func:`paper_max_episode_reward` knows the task's maximum."""
    return isinstance(task, VmasClass) and task.name.lower() in PAPER_MAX_REWARD_TASKS


def _unknown_maximum_error(task: TaskClass) -> ValueError:
    return ValueError(
        f"EarlyStopping knows the maximum reward of vmas/dispersion, vmas/discovery and vmas/transport only, not of "
        f"{task.env_name()}/{task.name.lower()}: pass max_episode_reward=(a number, or a function of the task and the "
        "evaluation rollouts returning one number per env)."
    )


def paper_max_episode_reward(task: TaskClass, rollouts: List[TensorDictBase]) -> torch.Tensor:
    """Each evaluation env's maximum episode reward per agent, as the SHAC++ authors define it for early stopping.

    * dispersion: the number of food items with a shared reward (every agent is credited every food eaten), the
      number of food items per agent with VMAS's per-agent rewards (a food's reward is split among the agents on it);
    * discovery: the number of targets;
    * transport: 100 × the package's initial distance to the goal (read from the first observation, whose
      features 4:6 are the package-goal offset).

    Raises:
        ValueError: for other tasks, naming the ``max_episode_reward`` argument that supplies the maximum.
    """
    name = task.name.lower() if has_paper_max_episode_reward(task) else None
    if name == "dispersion":
        shared = task.config.get("share_reward", False)
        return torch.full((len(rollouts),), task.config["n_food"] / (1 if shared else task.config["n_agents"]))
    if name == "discovery":
        return torch.full((len(rollouts),), float(task.config["n_targets"]))
    if name == "transport":
        group = next(key for key in rollouts[0].keys() if key not in ("next", "done", "terminated", "truncated"))
        offsets = torch.stack([rollout[group, "observation"][0, 0, 4:6] for rollout in rollouts])
        return TRANSPORT_SHAPING * offsets.norm(dim=-1)
    raise _unknown_maximum_error(task)


class _Solved(Exception):
    """Raised inside BenchMARL's collection loop to end it after a solving evaluation."""


class EarlyStopping(Callback):
    r"""Stops training once a fraction ``env_fraction`` of the evaluation envs reach ``reward_fraction`` of the task's
    maximum episode reward (paper: 90% of the envs at 90% of the maximum).

    After every evaluation it compares each env's first-episode reward (mean over agents and groups, as BenchMARL
    logs it) with ``reward_fraction`` × the env's maximum, and logs ``eval/solved_fraction``. When enough envs
    are solved the experiment ends as if it had run out of frames: the iteration's logs are committed, the final
    checkpoint is written if ``checkpoint_at_end``, and everything is closed. BenchMARL's loop has no stop signal,
    so :meth:`on_setup` wraps the experiment's collection loop to end it there.

    BenchMARL evaluates only with ``experiment.evaluation`` on and a logger or ``create_json``: the callback refuses
    any other configuration at set-up, as it could never stop the run.

    From the command line: ``python -m torchrl_shacpp.benchmarl.run`` is ``python -m benchmarl.run`` with this
    callback (e.g. ``algorithm=mappo`` under the same protocol as ``algorithm=shacpp``).

    Args:
        env_fraction: fraction of evaluation envs that must be solved. Defaults to 0.9.
        reward_fraction: fraction of the maximum episode reward that solves an env. Defaults to 0.9.
        max_episode_reward: a number, or ``f(task, rollouts) -> tensor[n_envs]``; defaults to
            :func:`paper_max_episode_reward`.

    Attributes:
        solved_at_frames: the frame count of the solving evaluation, ``None`` while unsolved.
    """

    def __init__(
        self,
        env_fraction: float = 0.9,
        reward_fraction: float = 0.9,
        max_episode_reward: float | Callable[[TaskClass, List[TensorDictBase]], torch.Tensor] = paper_max_episode_reward,
    ) -> None:
        super().__init__()
        if not (0 < env_fraction <= 1 and 0 < reward_fraction <= 1):
            raise ValueError(
                f"env_fraction and reward_fraction must be in (0, 1]; got {env_fraction} and {reward_fraction}."
            )
        self.env_fraction = env_fraction
        self.reward_fraction = reward_fraction
        self.max_episode_reward = max_episode_reward
        self.solved_at_frames: int | None = None
        self._in_collection_loop = False
        self._batch_collected_at = time.time()

    def on_setup(self) -> None:
        experiment = self.experiment
        if self.max_episode_reward is paper_max_episode_reward and not has_paper_max_episode_reward(experiment.task):
            raise _unknown_maximum_error(experiment.task)  # at set-up, not after the first evaluation
        config = experiment.config
        if not (config.evaluation and (config.loggers or config.create_json)):
            raise ValueError(
                "EarlyStopping decides after each evaluation, and BenchMARL evaluates only with "
                "experiment.evaluation=true and a logger (experiment.loggers) or experiment.create_json=true; got "
                f"evaluation={config.evaluation}, loggers={list(config.loggers)}, create_json={config.create_json}. "
                "Turn them on, or train without early stopping (python -m benchmarl.run)."
            )
        collection_loop = experiment._collection_loop

        def collection_loop_until_solved() -> None:
            self._in_collection_loop = True
            try:
                collection_loop()
            except _Solved:
                # BenchMARL logs an iteration's counters after its evaluation, which the stop cut short: log them here
                # (the time from the end of the iteration's collection on; its collection time is not observable)
                experiment.total_time += time.time() - self._batch_collected_at
                experiment.logger.log(
                    {"counters/total_frames": experiment.total_frames, "timers/total_time": experiment.total_time},
                    step=experiment.n_iters_performed,
                )
                experiment.n_iters_performed += 1  # the solving iteration ended with its evaluation
                experiment.logger.commit()
                if experiment.config.checkpoint_at_end:
                    experiment._save_experiment()
                experiment.close()
            finally:
                self._in_collection_loop = False

        experiment._collection_loop = collection_loop_until_solved

    def on_batch_collected(self, batch: TensorDictBase) -> None:
        self._batch_collected_at = time.time()

    def solved_fraction(self, rollouts: List[TensorDictBase]) -> float:
        """The fraction of evaluation envs whose episode reward reaches ``reward_fraction`` of their maximum."""
        groups = list(self.experiment.group_map)
        returns = torch.stack(
            [torch.stack([rollout["next", group, "reward"].sum(0).mean() for group in groups]).mean() for rollout in rollouts]
        )
        maximum = self.max_episode_reward
        if callable(maximum):
            maximum = maximum(self.experiment.task, rollouts)
        solved = returns >= self.reward_fraction * torch.as_tensor(maximum, dtype=returns.dtype)
        return solved.float().mean().item()

    def on_evaluation_end(self, rollouts: List[TensorDictBase]) -> None:
        fraction = self.solved_fraction(rollouts)
        experiment = self.experiment
        experiment.logger.log({"eval/solved_fraction": fraction}, step=experiment.n_iters_performed)
        if fraction >= self.env_fraction and self._in_collection_loop:
            self.solved_at_frames = experiment.total_frames
            print(
                f"\nEarly stopping: {fraction:.0%} of the evaluation envs reached {self.reward_fraction:.0%} of the "
                f"maximum reward after {experiment.total_frames} frames.\n"
            )
            raise _Solved


class EvaluationInfo(Callback):
    r"""Logs what each evaluation episode's info terms add up to: ``eval/<group>/info/<key>``, the sum over the
    episode's steps of the env's per-agent info ``key`` (VMAS's navigation: ``pos_rew``, ``final_rew``,
    ``agent_collisions``), averaged over the group's agents and the evaluation envs.

    BenchMARL logs the evaluation's return and, for the collections, each info term's mean per step. Where the info
    terms are the reward's parts, this splits the evaluation return the same way: an algorithm that trails another
    can be seen to collide more, or to arrive less. Only terms of one number per agent and step are logged.
    """

    def on_evaluation_end(self, rollouts: List[TensorDictBase]) -> None:
        experiment = self.experiment
        logs = {}
        for group in experiment.group_map:
            info = rollouts[0].get(("next", group, "info"), None)
            if info is None:
                continue
            for key, value in info.items():
                if value[0].numel() != len(experiment.group_map[group]):  # not one number per agent and step
                    continue
                sums = [rollout["next", group, "info", key].float().sum(0).mean() for rollout in rollouts]
                logs[f"eval/{group}/info/{key}"] = torch.stack(sums).mean().item()
        if logs:
            experiment.logger.log(logs, step=experiment.n_iters_performed)


class KeepEvaluationHistory(Callback):
    """Keeps a restored run's earlier evaluations in its marl-eval JSON.

    BenchMARL's JSON writer of a restored experiment (``experiment.restore_file``) starts empty and rewrites the file
    at the next evaluation, losing every evaluation before the checkpoint. After the checkpoint is loaded, this
    callback reads the file back into the writer: the evaluations up to the checkpoint's frames, and the best value of
    each metric over them (marl-eval's ``absolute_metrics``); the iterations after the checkpoint are trained again and
    re-evaluated (the csv logger appends them again: the last value of an iteration is the restored run's).
    """

    def on_load_state_dict(self, state_dict: dict[str, Any]) -> None:
        writer = self.experiment.logger.json_writer
        if writer is None or not writer.path.exists():
            return
        data = json.loads(writer.path.read_text())
        ((previous,),) = [
            list(seeds.values())
            for tasks in data.values()
            for algorithms in tasks.values()
            for seeds in algorithms.values()
        ]
        steps = {
            key: value
            for key, value in previous.items()
            if key.startswith("step_") and value["step_count"] <= self.experiment.total_frames
        }
        best: dict[str, list[float]] = {}
        for step in steps.values():
            for metric, values in step.items():
                if isinstance(values, list) and values:
                    best[metric] = [max([*values, *best.get(metric, [])])]
        writer.run_data.clear()
        writer.run_data.update(absolute_metrics=best, **steps)
