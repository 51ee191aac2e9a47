"""Twenty windows of SHAC, SHAC+ and SHAC++ through BenchMARL with a fixed seed, and the losses they log.

``tests/test_golden.py`` compares a fresh run with ``window_losses.json``, which this script writes
(``python tests/golden/window_losses.py``): a refactoring of the training code must leave every loss as it was. Only
a deliberate change of behaviour regenerates the file, and says so in its commit.
"""

from __future__ import annotations

import csv
import json
import sys
import tempfile
from pathlib import Path

import torch
from benchmarl.environments import VmasTask
from benchmarl.experiment import Experiment, ExperimentConfig
from benchmarl.models import MlpConfig

from torchrl_shacpp.benchmarl import PaperVmasTask, ShacConfig, ShacpConfig, ShacppConfig

GOLDEN = Path(__file__).with_name("window_losses.json")
WINDOWS = 20
#: What each run logs per window (or per cool-down) under ``train/agents/<name>``.
LOGGED = ("actor_loss", "action_bound_loss", "actor_grad_norm", "loss_value", "loss_value_cache", "loss_reward", "loss_world")


def runs() -> dict:
    """The three runs: algorithm config and task, at sizes that take seconds."""
    # The learning rates of the recording (SHAC+/SHAC++ default to 3e-3 since).
    rates = dict(actor_lr=1e-3, critic_lr=1e-3)
    models = dict(model_train_every=4, model_epochs=2, model_minibatch_size=64, cache_size=450, model_lr=1e-3, **rates)
    return {
        "shac_transport": (ShacConfig(), VmasTask.TRANSPORT),
        "shacp_transport": (ShacpConfig(**models), VmasTask.TRANSPORT),
        # The paper's one-pass world model, which the recording was made with (SHAC++'s default is spliced since).
        "shacpp_dispersion": (
            ShacppConfig(
                **models, world_cache_size=50, critic_from_cache=True, world_rollout="one_pass", actor_replay_steps=0,
                model_steps=None, reward_centralised=True,
            ),  # one actor step per window, the paper's passes and the pooled reward model (SHAC++ replays 3 more,
            # trains its reward model on 300 minibatches, and on the paper's dispersion reads each agent's reward off
            # its own transition by default since)
            PaperVmasTask.DISPERSION,
        ),
    }


def window_losses(algorithm_config, task, folder: Path) -> dict[str, list[float]]:
    """Runs ``WINDOWS`` windows of 8 envs x 8 steps, 2 agents, episodes of 12 steps; returns the logged losses."""
    config = ExperimentConfig.get_from_yaml()
    settings = dict(
        on_policy_n_envs_per_worker=8, on_policy_collected_frames_per_batch=64, on_policy_n_minibatch_iters=2,
        on_policy_minibatch_size=32, evaluation=False, loggers=["csv"], render=False, max_n_frames=None,
        max_n_iters=WINDOWS, save_folder=str(folder), create_json=False, lr=1e-3,
        collect_with_grad=not isinstance(algorithm_config, ShacppConfig),
    )  # fmt: skip
    for key, value in settings.items():
        setattr(config, key, value)
    folder.mkdir(parents=True)
    task = task.get_from_yaml()
    task.config.update(n_agents=2, max_steps=12)
    if "n_food" in task.config:
        task.config["n_food"] = 2
    torch.manual_seed(0)
    experiment = Experiment(
        task=task, algorithm_config=algorithm_config, model_config=MlpConfig.get_from_yaml(),
        critic_model_config=MlpConfig.get_from_yaml(), seed=0, config=config,
    )  # fmt: skip
    experiment.run()
    losses = {}
    for name in LOGGED:
        for path in folder.rglob(f"scalars/train_agents_{name}.csv"):
            with open(path) as file:
                losses[name] = [float(row[1]) for row in csv.reader(file)]
    return losses


def all_window_losses() -> dict[str, dict[str, list[float]]]:
    with tempfile.TemporaryDirectory() as folder:
        return {
            name: window_losses(algorithm, task, Path(folder) / name)
            for name, (algorithm, task) in runs().items()
        }


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(all_window_losses(), indent=1) + "\n")
    sys.exit(0)
