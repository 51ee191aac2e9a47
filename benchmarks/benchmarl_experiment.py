"""A BenchMARL experiment from its hydra configuration, for the benchmark scripts that need the object itself."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import benchmarl
import torch
from benchmarl.experiment import Experiment
from benchmarl.experiment.callback import Callback
from benchmarl.hydra_config import load_experiment_from_hydra
from hydra import compose, initialize_config_dir
from tensordict import TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

BENCHMARL_CONFIGS = str(Path(benchmarl.__file__).parent / "conf")


def compose_experiment(task: str, overrides: list[str], callbacks: list[Callback]) -> Experiment:
    """The experiment ``python -m benchmarl.run task=<task> <overrides>`` would run (our algorithms and presets
    included, through the package's hydra search path), with ``callbacks``, set up but not run."""
    with initialize_config_dir(config_dir=BENCHMARL_CONFIGS, version_base=None):
        cfg = compose(config_name="config", overrides=[f"task={task}", *overrides])
    return load_experiment_from_hydra(cfg, task_name=task, callbacks=callbacks)


def restore_experiment(checkpoint: Path, overrides: list[str]) -> tuple[Experiment, str]:
    """The experiment of a BenchMARL run restored from ``checkpoint``, and its task's name, from the run's command-line
    ``overrides`` (which name the task once, ``task=vmas/<name>``). Nothing is logged: a restored experiment would log
    into the checkpointed run's folder."""
    overrides = [override for override in overrides if not override.startswith("experiment.loggers=")]
    tasks = [override.removeprefix("task=") for override in overrides if override.startswith("task=")]
    if len(tasks) != 1:
        raise SystemExit(f"Name the run's task once among the overrides (task=vmas/<name>); got {tasks or 'none'}.")
    overrides = [override for override in overrides if not override.startswith("task=")]
    overrides += [f"experiment.restore_file={checkpoint.resolve()}", "experiment.loggers=[]"]
    return compose_experiment(tasks[0], overrides, callbacks=[]), tasks[0]


def policy_rollouts(experiment: Experiment, seed: int) -> Iterator[tuple[str, TensorDictBase]]:
    """One episode of the experiment's policy on every evaluation env, deterministically (as BenchMARL's evaluation
    with ``evaluation_deterministic_actions``) and with its exploration noise, each from the same random stream:
    ``("deterministic" | "random", rollout [env, time])``."""
    env = experiment.test_env
    for exploration in (ExplorationType.DETERMINISTIC, ExplorationType.RANDOM):
        torch.manual_seed(seed)
        with set_exploration_type(exploration), torch.no_grad():
            rollout = env.rollout(experiment.task.max_steps(env), policy=experiment.policy, break_when_any_done=False)
        yield exploration.name.lower(), rollout


class FillCaches(Callback):
    """Fills every learned model's cache of a SHAC-family run to capacity with its first window's items, repeated,
    written straight into the storage: the arithmetic of a cool-down depends on how many items a cache holds, not on
    which, so the run's later windows cost what they cost at steady state (caches full) without the thousands of
    windows that fill them. ``filled`` maps each model to its cache's size afterwards. Does nothing for other
    algorithms."""

    def __init__(self) -> None:
        super().__init__()
        self.filled: dict[str, int] = {}

    def on_batch_collected(self, batch: TensorDictBase) -> None:
        update = getattr(self.experiment.algorithm, "update", None)
        if self.filled or update is None:
            return
        windows = update.split(batch.detach())
        for group in update.groups.values():
            for model in group.models:
                # Into the storage, past the writer: a stratified writer would keep one window's items in the few
                # bins its scores fall in, and a cache would never fill.
                items = torch.cat([model.items(window) for window in windows])
                size = model.cache.storage.max_size
                model.cache.storage.set(torch.arange(size), items[torch.arange(size) % len(items)])
                self.filled[model.name] = len(model.cache)


class ProfileWindow(Callback):
    """Profiles window ``window`` (counted from 1) under :mod:`torch.profiler`: from its collected batch to the end of
    BenchMARL's training loop after it, or with ``through_next_collection`` to the next collected batch (so that the
    next collection is in too). Afterwards ``events`` holds the profile's averages by name and ``wall_s`` the span's
    wall time."""

    def __init__(self, window: int, *, cuda: bool = False, through_next_collection: bool = False) -> None:
        super().__init__()
        self.window, self.through_next_collection, self.seen = window, through_next_collection, 0
        activities = [torch.profiler.ProfilerActivity.CPU]
        if cuda:
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self.profiler = torch.profiler.profile(activities=activities)
        self.events, self.wall_s, self.running = {}, 0.0, False

    def on_batch_collected(self, batch: TensorDictBase) -> None:
        self.seen += 1
        if self.seen == self.window:
            self.start, self.running = time.perf_counter(), True
            self.profiler.start()
        elif self.seen == self.window + 1 and self.through_next_collection:
            self._stop()

    def on_train_end(self, training_td: TensorDictBase, group: str) -> None:
        if self.seen == self.window and not self.through_next_collection:
            self._stop()

    def _stop(self) -> None:
        if self.running:  # BenchMARL ends the training of each group: the first end stops the profile
            self.profiler.stop()
            self.wall_s, self.running = time.perf_counter() - self.start, False
            self.events = {event.key: event for event in self.profiler.key_averages()}
