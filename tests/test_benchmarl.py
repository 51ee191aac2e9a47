"""The BenchMARL layer: the algorithms from the command line and from Python, resume, errors, early stopping."""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from benchmarl.algorithms import MappoConfig
from benchmarl.environments import VmasTask, task_config_registry
from benchmarl.experiment import Experiment, ExperimentConfig
from benchmarl.experiment.callback import Callback
from benchmarl.models import MlpConfig
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from tensordict import TensorDict
from torchrl.data import Composite, Unbounded
from torchrl.envs import TransformedEnv
from torch import nn
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_shacpp.benchmark.runs import _marl_eval_entry
from torchrl_shacpp.benchmarl import (
    CentredVmasTask,
    EarlyStopping,
    EvaluationInfo,
    PaperVmasTask,
    ShacConfig,
    ShacpConfig,
    ShacppConfig,
    SlotSetModelConfig,
    TransformerConfig,
    experiment_config,
)
from torchrl_shacpp.benchmarl.callbacks import paper_max_episode_reward
from torchrl_shacpp.benchmarl.envs import rebuild_vmas_env, rewards_are_each_agents_own
from torchrl_shacpp.benchmarl.run import early_stopping
from torchrl_shacpp.envs import (
    CentredRotationBalance,
    DifferentiableNavigation,
    DifferentiableSampling,
    DifferentiableTransport,
)
from torchrl_shacpp.modules import SlotSet, SlotSumReward

# 8 envs x 8-step windows, 2 agents; evaluation at every window on 4 envs.
TINY = [
    "task.n_agents=2",
    "experiment.on_policy_n_envs_per_worker=8",
    "experiment.on_policy_collected_frames_per_batch=64",
    "experiment.on_policy_n_minibatch_iters=1",
    "experiment.on_policy_minibatch_size=32",
    "experiment.evaluation_interval=64",
    "experiment.evaluation_episodes=4",
    "experiment.loggers=[csv]",
    "experiment.render=false",
]


def benchmarl_run(tmp_path: Path, *overrides: str, module: str = "benchmarl.run", multirun: bool = False):
    """Runs BenchMARL's hydra app in ``tmp_path`` as a user would (no ``WANDB_MODE``); returns the completed process."""
    command = [sys.executable, "-m", module, *(["-m"] if multirun else []), *overrides]
    env = {key: value for key, value in os.environ.items() if key != "WANDB_MODE"}
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)


def scalar(run_folder: Path, name: str) -> list[float]:
    """The values of a BenchMARL csv scalar (``scalars/<name>.csv``) of the single run under ``run_folder``."""
    (path,) = run_folder.rglob(f"scalars/{name}.csv")
    with open(path) as file:
        return [float(row[1]) for row in csv.reader(file)]


@pytest.mark.parametrize(
    "algorithm, task, options",
    [
        ("shac", "transport", []),
        ("shacp", "transport", []),
        ("shacpp", "transport", []),
        ("shacpp", "transport", ["algorithm.world_rollout=spliced"]),
        ("shacp", "sampling", []),
    ],
)
def test_command_line_run_trains_the_actor(tmp_path: Path, algorithm: str, task: str, options: list[str]):
    # Episodes of 12 steps end inside the second and third windows: backward must survive VMAS's resets.
    result = benchmarl_run(
        tmp_path, f"algorithm={algorithm}", f"task=vmas/{task}", "task.max_steps=12", "experiment.max_n_iters=3",
        *options, *TINY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    grad_norms = scalar(tmp_path, "train_agents_actor_grad_norm")
    assert len(grad_norms) == 3 and all(0 < g < float("inf") for g in grad_norms)
    assert scalar(tmp_path, "train_agents_skipped_actor_steps") == [0, 0, 0]
    if algorithm == "shacpp":  # the cool-down of the paper trains the models after the 10th window only
        assert not list(tmp_path.rglob("scalars/train_agents_loss_world.csv"))
    else:  # BenchMARL's loop trains the critic every window
        assert len(scalar(tmp_path, "train_agents_loss_value")) == 3


@pytest.mark.parametrize(
    "algorithm, task, steps",
    [("shac", "transport", [1, 1, 1]), ("shacp", "sampling", [1, 1, 1]), ("shacpp", "dispersion_paper", [2, 8, 8])],
)
def test_collections_longer_than_a_window(tmp_path: Path, algorithm: str, task: str, steps: list[int]):
    """8-step collections in 4-step windows, episodes of 6 steps: the simulator's graph is cut between the windows
    inside a collection (SHAC, SHAC+: one step per collection on both windows' objectives); SHAC++ takes a step
    per window, and, once its models have trained (after the 2nd window), 3 more per window on replayed windows."""
    result = benchmarl_run(
        tmp_path, f"algorithm={algorithm}", f"task=vmas/{task}", "task.max_steps=6", "algorithm.window_length=4",
        "experiment.max_n_iters=3", *(["algorithm.model_train_every=2"] if algorithm == "shacpp" else []), *TINY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert scalar(tmp_path, "train_agents_actor_steps") == steps
    assert all(0 < g < float("inf") for g in scalar(tmp_path, "train_agents_actor_grad_norm"))


@pytest.mark.parametrize("critic_from_cache", [False, True])
def test_shacpp_trains_its_models_on_the_cooldown_schedule(tmp_path: Path, critic_from_cache: bool):
    """World and reward models train every 2nd window; the critic in BenchMARL's loop every window (the default), or
    from its own cache on the cool-down, as the authors' (BenchMARL's loop then only evaluates it)."""
    result = benchmarl_run(
        tmp_path, "algorithm=shacpp", "task=vmas/dispersion_paper", "experiment.max_n_iters=4",
        "algorithm.model_train_every=2", "algorithm.model_epochs=2", "model=layers/transformer",
        "model@critic_model=layers/transformer", f"algorithm.critic_from_cache={critic_from_cache}", *TINY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for model in ("world", "reward", *(["value_cache"] if critic_from_cache else [])):
        losses = scalar(tmp_path, f"train_agents_loss_{model}")
        assert len(losses) == 2 and all(0 <= loss < float("inf") for loss in losses)
    stepped_in_loop = list(tmp_path.rglob("scalars/train_agents_grad_norm_loss_value.csv"))
    assert bool(stepped_in_loop) != critic_from_cache


def test_shacpp_replayed_actor_steps_add_to_each_collections_step(tmp_path: Path):
    """One window per collection; the models train after each: the replayed steps start at the 2nd collection."""
    result = benchmarl_run(
        tmp_path, "algorithm=shacpp", "task=vmas/transport", "experiment.max_n_iters=3",
        "algorithm.actor_replay_steps=2", "algorithm.model_train_every=1", "algorithm.model_epochs=1", *TINY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert scalar(tmp_path, "train_agents_actor_steps") == [1, 3, 3]


@pytest.mark.parametrize("algorithm, task", [("shacp", "sampling"), ("shacpp", "dispersion_paper")])
def test_actor_waits_for_its_models_first_training(tmp_path: Path, algorithm: str, task: str):
    """With actor_waits_for_models the models train after windows 2 and 4, and the actor steps from window 3 on
    (SHAC++: 3 replayed steps besides, by default)."""
    result = benchmarl_run(
        tmp_path, f"algorithm={algorithm}", f"task=vmas/{task}", "experiment.max_n_iters=4",
        "algorithm.model_train_every=2", "algorithm.model_epochs=1", "algorithm.actor_waits_for_models=true", *TINY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    steps = 1 if algorithm == "shacp" else 4
    assert scalar(tmp_path, "train_agents_actor_steps") == [0, 0, steps, steps]
    assert len(scalar(tmp_path, "train_agents_loss_reward")) == 2
    assert all(0 < g < float("inf") for g in scalar(tmp_path, "train_agents_actor_grad_norm"))


@pytest.mark.parametrize("std_override", ["algorithm.learn_std=true", "algorithm.action_std_final=0.4"])
def test_the_action_std_of_each_collection_is_logged_and_moves(tmp_path: Path, std_override: str):
    """The σ each collection was drawn with is logged: with learn_std the initial 1, then what the actor steps made;
    with action_std_final σ falls linearly from action_std (1) to it over the experiment's collections."""
    result = benchmarl_run(
        tmp_path, "algorithm=shacpp", "task=vmas/transport", "experiment.max_n_iters=3", std_override, *TINY
    )
    assert result.returncode == 0, result.stderr[-3000:]
    stds = scalar(tmp_path, "train_agents_action_std")
    if std_override == "algorithm.learn_std=true":
        assert len(stds) == 3 and stds[0] == pytest.approx(1.0) and stds[2] != pytest.approx(1.0, abs=1e-6)
    else:
        assert stds == pytest.approx([1.0, 0.7, 0.4], abs=1e-5)


def test_wandb_logs_offline_by_default(tmp_path: Path):
    """BenchMARL logs to wandb by default: the run must need neither an account nor a network."""
    result = benchmarl_run(
        tmp_path, "algorithm=shacpp", "task=vmas/transport", "experiment.max_n_iters=1", *TINY,
        "experiment.loggers=[wandb]",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(tmp_path.rglob("wandb/offline-run-*"))


def test_mappo_with_the_slot_set_policy(tmp_path: Path):
    """``model=layers/slot_set`` is a policy for BenchMARL's own algorithms too (the same policy for MAPPO as for
    SHAC++ in a comparison)."""
    result = benchmarl_run(
        tmp_path, "algorithm=mappo", "task=vmas/dispersion_paper", "model=layers/slot_set", "model.slots=[4,3]",
        "model@critic_model=layers/transformer", "experiment.max_n_iters=2", *TINY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(scalar(tmp_path, "train_agents_loss_objective")) == 2


def test_mappo_with_the_transformer_model(tmp_path: Path):
    result = benchmarl_run(
        tmp_path, "algorithm=mappo", "task=vmas/transport", "model=layers/transformer",
        "model@critic_model=layers/transformer", "experiment.max_n_iters=2", *TINY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(scalar(tmp_path, "train_agents_loss_objective")) == 2


def test_command_line_resume_continues_the_run(tmp_path: Path):
    first = benchmarl_run(
        tmp_path, "algorithm=shacpp", "task=vmas/transport", "experiment.max_n_iters=2",
        "experiment.checkpoint_at_end=true", *TINY,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    (checkpoint,) = tmp_path.rglob("checkpoints/checkpoint_128.pt")
    assert "torchrl_shacpp" in torch.load(checkpoint, weights_only=False)
    resumed = benchmarl_run(
        tmp_path, "algorithm=shacpp", "task=vmas/transport", "experiment.max_n_iters=3",
        f"experiment.restore_file={checkpoint}", *TINY,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert scalar(checkpoint.parents[1], "counters_iter")[-1] == 2  # the third iteration, in the same run folder


def test_our_run_resumed_keeps_its_earlier_evaluations(tmp_path: Path):
    """BenchMARL's JSON writer of a restored run starts empty; ours keeps the evaluations before the checkpoint, which
    the learning comparison reads beside the csv scalars (a restored run's count of both must agree)."""
    overrides = ["algorithm=shacpp", "task=vmas/transport", "experiment.checkpoint_at_end=true", *TINY]
    first = benchmarl_run(tmp_path, *overrides, "experiment.max_n_iters=2", module="torchrl_shacpp.benchmarl.run")
    assert first.returncode == 0, first.stderr[-3000:]
    (checkpoint,) = tmp_path.rglob("checkpoints/checkpoint_128.pt")
    (json_file,) = checkpoint.parents[1].glob("*.json")
    before = run_steps(json_file)
    resumed = benchmarl_run(
        tmp_path, *overrides, "experiment.max_n_iters=3", f"experiment.restore_file={checkpoint}",
        module="torchrl_shacpp.benchmarl.run",
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = run_steps(json_file)
    assert len(before) == 2 and len(after) == 3
    assert {step: after[step] for step in before} == before


def run_steps(json_file: Path) -> dict:
    """The ``step_<i>`` entries of a run's marl-eval JSON, read as the learning comparison reads it."""
    return {key: value for key, value in _marl_eval_entry(json_file).items() if key.startswith("step_")}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["algorithm=shac", "task=vmas/dispersion"], "shac needs a differentiable reward"),
        (["algorithm=shacpp", "task=vmas/transport", "experiment.prefer_continuous_actions=false"],
         "needs continuous actions"),
        (["algorithm=shacpp", "task=vmas/transport", "model=layers/gru"], "does not support recurrent models"),
        (["algorithm=shac", "task=vmas/transport", "experiment.collect_with_grad=false"], "collect_with_grad=true"),
        (["algorithm=shacpp", "task=vmas/transport", "experiment.on_policy_collected_frames_per_batch=60",
          "experiment.evaluation_interval=60"], "not a multiple of"),
        (["algorithm=shacpp", "task=vmas/transport", "algorithm.cache_size=5"], "cannot hold 9 bins"),
        (["algorithm=shacpp", "task=vmas/transport", "task=vmas/navigatio"], "Could not find 'task/vmas/navigatio'"),
    ],
)  # fmt: skip
def test_bad_input_fails_early_with_the_fix(tmp_path: Path, overrides: list[str], message: str):
    result = benchmarl_run(tmp_path, *TINY, "experiment.max_n_iters=1", *overrides)
    assert result.returncode != 0
    assert message in result.stderr


def tiny_experiment(
    algorithm_config, tmp_path: Path, task=VmasTask.TRANSPORT, callbacks=(), n_agents: int = 2, task_config=None,
    **config,
) -> Experiment:
    """A Python-API experiment at the sizes of :data:`TINY`; ``task_config`` updates the task's settings."""
    experiment_config = ExperimentConfig.get_from_yaml()
    settings = dict(
        on_policy_n_envs_per_worker=8, on_policy_collected_frames_per_batch=64, on_policy_n_minibatch_iters=1,
        on_policy_minibatch_size=32, evaluation_interval=64, evaluation_episodes=4, loggers=[], render=False,
        max_n_frames=None, save_folder=str(tmp_path), create_json=False,
    )  # fmt: skip
    for key, value in {**settings, **config}.items():
        setattr(experiment_config, key, value)
    tmp_path.mkdir(parents=True, exist_ok=True)
    task = task.get_from_yaml()
    task.config.update(n_agents=n_agents, **(task_config or {}))
    return Experiment(
        task=task,
        algorithm_config=algorithm_config,
        model_config=MlpConfig.get_from_yaml(),
        critic_model_config=MlpConfig.get_from_yaml(),
        seed=0,
        config=experiment_config,
        callbacks=list(callbacks),
    )


@pytest.mark.parametrize("relative_cost", [False, True])
def test_restored_shacpp_trains_the_next_window_exactly_as_the_uninterrupted_run(tmp_path: Path, relative_cost: bool):
    """Models, optimisers, caches and counters all come back: on the same next window, the restored run's losses and
    parameters equal the uninterrupted run's. The window's third step trains the models from the caches (cool-down),
    so a cache or a model optimiser that did not come back would show; with the relative control cost, so would its
    running mean of the return's gradient, which sets the cost's weight."""
    cost = dict(action_mean_coef=1.0, action_mean_relative=True) if relative_cost else {}
    algorithm = ShacppConfig(model_train_every=3, model_epochs=2, cache_size=200, world_cache_size=50, **cost)
    uninterrupted = tiny_experiment(algorithm, tmp_path / "a", max_n_iters=2, checkpoint_at_end=True)
    uninterrupted.run()
    (checkpoint,) = (tmp_path / "a").rglob("checkpoint_128.pt")
    restored = tiny_experiment(algorithm, tmp_path / "b", max_n_iters=3, restore_file=str(checkpoint))
    next_window = next(iter(restored.collector)).detach()

    def train_on(experiment: Experiment) -> dict[str, float]:
        logged = {}
        experiment.logger.log = lambda values, step: logged.update(values)
        batch = next_window.clone()
        experiment.algorithm.on_batch_collected(batch)  # the window update: actor, targets, caches, cool-down
        logged["value_target_sum"] = batch["agents", "value_target"].sum().item()
        return logged

    logged_a, logged_b = ({k: v for k, v in train_on(e).items() if "time" not in k} for e in (uninterrupted, restored))
    logged = {"actor_loss", "loss_world", "loss_reward", "new_data_loss_world", "new_data_loss_reward"}
    logged |= {"action_mean_weight"} if relative_cost else set()
    assert {f"train/agents/{key}" for key in logged} <= logged_a.keys()
    assert logged_a == logged_b

    def parameters(experiment: Experiment) -> dict[str, torch.Tensor]:
        """Every network's parameters: the critic (BenchMARL's loss), the policy and the learned models."""
        update = experiment.algorithm.update.state_dict()["groups"]["agents"]
        states = {"critic": experiment.losses["agents"].state_dict(), "actor": update["actor"]}
        states.update({name: model["loss"] for name, model in update["models"].items()})
        return {f"{name}/{key}": value for name, state in states.items() for key, value in state.items()}

    params_a, params_b = parameters(uninterrupted), parameters(restored)
    assert params_a.keys() == params_b.keys()
    tensors = [key for key, value in params_a.items() if isinstance(value, torch.Tensor)]
    assert len(tensors) > 20 and all(torch.equal(params_a[key], params_b[key]) for key in tensors)
    assert ("actor/return_gradient_scale" in tensors) == relative_cost  # a fresh mean would change the weight logged


def test_restored_run_steps_at_the_configured_rates_with_the_checkpoints_moments(tmp_path: Path):
    """A run restored with other rates (actor, critic, models) steps at those, not at the checkpoint's, which torch's
    ``load_state_dict`` would bring back; Adam's moments are still the checkpoint's."""
    first = tiny_experiment(ShacppConfig(model_train_every=1), tmp_path / "a", max_n_iters=2, checkpoint_at_end=True)
    first.run()
    (checkpoint,) = (tmp_path / "a").rglob("checkpoint_128.pt")
    rates = dict(actor_lr=2e-4, critic_lr=3e-4, model_lr=4e-4)
    restored = tiny_experiment(
        ShacppConfig(model_train_every=1, **rates), tmp_path / "b", max_n_iters=3, restore_file=str(checkpoint)
    )
    optimizers = {}
    for experiment in (first, restored):
        update = experiment.algorithm.update.groups["agents"]
        (critic_optimizer,) = experiment.optimizers["agents"].values()
        optimizers[experiment] = {"actor_lr": update.actor_step.optimizer, "critic_lr": critic_optimizer}
        optimizers[experiment].update({f"model_lr/{model.name}": model.step.optimizer for model in update.models})
    assert len(optimizers[restored]) == 4
    for name, optimizer in optimizers[restored].items():
        saved = optimizers[first][name]
        assert [group["lr"] for group in optimizer.param_groups] == [rates[name.split("/")[0]]]
        assert [group["lr"] for group in saved.param_groups] != [rates[name.split("/")[0]]]
        saved_state, restored_state = saved.state_dict()["state"], optimizer.state_dict()["state"]
        assert saved_state.keys() == restored_state.keys() and saved_state
        assert all(torch.equal(saved_state[i]["exp_avg"], restored_state[i]["exp_avg"]) for i in saved_state)


@pytest.mark.parametrize("algorithm", [ShacConfig(), ShacpConfig(model_train_every=1)])
def test_shac_and_shacp_checkpoints_restore(tmp_path: Path, algorithm):
    """SHAC and SHAC+ replay no actor windows, so their replay buffer is still empty when the checkpoint is written:
    a restored run comes back with the windows counted and the actor's parameters as they were."""
    config = {"collect_with_grad": True}
    first = tiny_experiment(algorithm, tmp_path / "a", max_n_iters=2, checkpoint_at_end=True, **config)
    first.run()
    (checkpoint,) = (tmp_path / "a").rglob("checkpoint_128.pt")
    restored = tiny_experiment(algorithm, tmp_path / "b", max_n_iters=3, restore_file=str(checkpoint), **config)
    assert restored.algorithm.update.windows == first.algorithm.update.windows == 2
    saved, loaded = (
        experiment.algorithm.update.state_dict()["groups"]["agents"]["actor"] for experiment in (first, restored)
    )
    tensors = [key for key, value in saved.items() if isinstance(value, torch.Tensor)]
    assert saved.keys() == loaded.keys() and tensors and all(torch.equal(saved[key], loaded[key]) for key in tensors)


@pytest.mark.parametrize(
    "world_rollout, world_steps, epochs_only", [("spliced", 300, False), ("one_pass", None, True)]
)
def test_world_models_train_on_their_own_budgets_by_default(
    tmp_path: Path, world_rollout: str, world_steps: int | None, epochs_only: bool
):
    """The spliced world model trains 300 minibatches per cool-down by default, however small its cache; the paper's
    one-pass world model, whose minibatches are windows, on the paper's passes; the reward model on the cool-down's
    budget (``model_steps``)."""
    experiment = tiny_experiment(ShacppConfig(world_rollout=world_rollout), tmp_path, max_n_iters=1)
    models = {model.name: model for model in experiment.algorithm.update.groups["agents"].models}
    assert (models["world"].steps, models["world"].epochs_only) == (world_steps, epochs_only)
    assert models["reward"].steps is None and not models["reward"].epochs_only


@pytest.mark.parametrize("world_rollout", ["one_pass", "spliced"])
def test_the_world_models_own_budget_options_reach_it(tmp_path: Path, world_rollout: str):
    """``algorithm.world_minibatch_size`` sizes the world model's minibatches and no other model's;
    ``algorithm.world_model_first_epochs`` gives the one-pass world model its first trainings' passes."""
    first_epochs = [30, 20] if world_rollout == "one_pass" else []
    config = ShacppConfig(world_rollout=world_rollout, world_minibatch_size=250, world_model_first_epochs=first_epochs)
    experiment = tiny_experiment(config, tmp_path, max_n_iters=1)
    models = {model.name: model for model in experiment.algorithm.update.groups["agents"].models}
    assert models["world"].cache.batch_size == 250 and models["reward"].cache.batch_size == config.model_minibatch_size
    assert models["world"].first_epochs == tuple(first_epochs) and models["reward"].first_epochs == ()


def test_shac_gradient_reaches_the_policy_every_window_through_the_simulator(tmp_path: Path):
    """Three windows in a row: the graph is cut between them (a second backward through a freed graph would raise),
    and every actor step has a finite, non-zero gradient."""
    experiment = tiny_experiment(ShacConfig(), tmp_path, max_n_iters=3, collect_with_grad=True)
    grad_norms = []
    log = experiment.logger.log
    experiment.logger.log = lambda values, step: (
        grad_norms.append(values["train/agents/actor_grad_norm"]) if "train/agents/actor_grad_norm" in values else None,
        log(values, step),
    )
    experiment.run()
    assert len(grad_norms) == 3 and all(0 < g < float("inf") for g in grad_norms)


def test_early_stopping_ends_the_run_cleanly_after_the_solving_evaluation(tmp_path: Path):
    """With a maximum every env reaches, the first evaluation (before training) solves the task: MAPPO stops after
    one iteration instead of five, the run ends normally, and the solving iteration's frames and time are logged
    (BenchMARL logs them after the evaluation that the stop cuts short)."""
    stopper = EarlyStopping(max_episode_reward=-1.0)
    mappo = MappoConfig.get_from_yaml()
    experiment = tiny_experiment(
        mappo, tmp_path, callbacks=[stopper], max_n_iters=5, checkpoint_at_end=True, create_json=True, loggers=["csv"]
    )
    experiment.run()
    assert experiment.n_iters_performed == 1 and stopper.solved_at_frames == 64
    assert list(tmp_path.rglob("checkpoint_64.pt"))
    (frames,) = tmp_path.rglob("counters_total_frames.csv")
    (total_time,) = tmp_path.rglob("timers_total_time.csv")
    assert frames.read_text().split() == ["0,64.0"] and float(total_time.read_text().split(",")[1]) > 0


def test_early_stopping_never_stops_an_unsolved_run(tmp_path: Path):
    stopper = EarlyStopping(max_episode_reward=1e6)
    experiment = tiny_experiment(
        MappoConfig.get_from_yaml(), tmp_path, callbacks=[stopper], max_n_iters=2, create_json=True
    )
    experiment.run()
    assert experiment.n_iters_performed == 2 and stopper.solved_at_frames is None


def test_early_stopping_on_a_task_without_a_paper_maximum(tmp_path: Path):
    """The command line runs vmas/sampling without early stopping; the callback alone refuses it at set-up."""
    result = benchmarl_run(
        tmp_path, "algorithm=mappo", "task=vmas/sampling", "experiment.max_n_iters=1", *TINY,
        module="torchrl_shacpp.benchmarl.run",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "No early stopping: the paper defines no maximum reward for vmas/sampling" in result.stdout
    with pytest.raises(ValueError, match="pass max_episode_reward"):
        tiny_experiment(
            MappoConfig.get_from_yaml(), tmp_path, task=VmasTask.SAMPLING, callbacks=[EarlyStopping()], max_n_iters=1
        )


@pytest.mark.parametrize(
    "override, stoppers", [(None, 1), ("+early_stopping.env_fraction=0.8", 1), ("+early_stopping=false", 0)]
)
def test_early_stopping_is_on_by_default_on_dispersion_and_can_be_turned_off(override: str | None, stoppers: int):
    """Dispersion has the paper's maximum, so its run stops at the target unless ``+early_stopping=false``; any
    other plain value is refused with the two accepted forms."""
    dispersion = ["algorithm=mappo", "model=layers/mlp", "model@critic_model=layers/mlp", "task=vmas/dispersion"]
    with initialize_config_module(config_module="benchmarl.conf", version_base=None):
        cfg = compose(config_name="config", overrides=[*dispersion, *([override] if override else [])])
        refused = compose(config_name="config", overrides=[*dispersion, "+early_stopping=0.9"])
    callbacks = early_stopping(cfg, "vmas/dispersion")
    assert len(callbacks) == stoppers and all(isinstance(c, EarlyStopping) for c in callbacks)
    if override and "env_fraction" in override:
        assert callbacks[0].env_fraction == 0.8
    with pytest.raises(ValueError, match=r"early_stopping=0.9: pass \+early_stopping=false"):
        early_stopping(refused, "vmas/dispersion")


def test_evaluation_info_splits_the_evaluation_return_into_the_tasks_terms(tmp_path: Path):
    """Navigation's reward is the sum of its info terms (goal shaping, arrival bonus, collision penalty): their logged
    episode sums add up to the evaluation return that BenchMARL logs."""
    experiment = tiny_experiment(
        MappoConfig.get_from_yaml(), tmp_path, task=VmasTask.NAVIGATION, callbacks=[EvaluationInfo()], max_n_iters=1,
        n_agents=3, create_json=True,  # BenchMARL evaluates only with a logger or a JSON
    )  # fmt: skip
    logged, log = {}, experiment.logger.log
    experiment.logger.log = lambda values, step: (logged.update(values), log(values, step))
    experiment.run()
    terms = [logged[f"eval/agents/info/{key}"] for key in ("pos_rew", "final_rew", "agent_collisions")]
    assert terms[0] != 0 and sum(terms) == pytest.approx(logged["eval/agents/reward/episode_reward_mean"], abs=1e-5)


def test_paper_maximum_rewards(tmp_path: Path):
    """Transport: 100 × the package's initial distance to the goal, read from the first observation and checked
    against the simulator's state; dispersion: one per food; other tasks need the maximum to be given."""
    experiment = tiny_experiment(MappoConfig.get_from_yaml(), tmp_path, max_n_iters=1)
    first_steps = experiment.test_env.reset()
    package = experiment.test_env.base_env._env.scenario.packages[0]
    rollouts = [first_steps[i].unsqueeze(0) for i in range(len(first_steps))]
    expected = 100 * (package.state.pos - package.goal.state.pos).norm(dim=-1)
    torch.testing.assert_close(paper_max_episode_reward(experiment.task, rollouts), expected)
    dispersion = VmasTask.DISPERSION.get_from_yaml()
    assert paper_max_episode_reward(dispersion, rollouts[:2]).tolist() == [dispersion.config["n_food"]] * 2
    with pytest.raises(ValueError, match="pass max_episode_reward"):
        paper_max_episode_reward(VmasTask.BALANCE.get_from_yaml(), rollouts)


def test_experiment_presets_for_python_users():
    paper = experiment_config("shacpp_paper")
    assert (paper.on_policy_n_envs_per_worker, paper.on_policy_collected_frames_per_batch, paper.lr) == (512, 16384, 1e-3)
    assert paper.evaluation_interval % paper.on_policy_collected_frames_per_batch == 0  # BenchMARL's own check
    assert experiment_config("shacpp_cpu").on_policy_n_envs_per_worker == 8
    with pytest.raises(ValueError, match="shacpp_cpu, shacpp_paper"):
        experiment_config("paper")


# The commands measured at equal frames against MAPPO, the run-control overrides left out (checkpoint interval, early
# stopping, loggers, rendering): dispersion n=3 in benchmarks/results/learning_vs_mappo/control_cost_scale/ (session
# 63), sampling n=3 in benchmarks/results/learning_vs_mappo/sampling_n3/ (session 67).
DISPERSION_N3_MODELS = [
    "task=vmas/dispersion_paper", "task.n_agents=3", "model=layers/slot_set", "model.slots=[4,3]",
    "model.hidden_size=64", "model.num_cells=[64]", "model@critic_model=layers/transformer",
    "experiment.evaluation_episodes=128", "experiment.evaluation_deterministic_actions=true",
]  # fmt: skip
DISPERSION_N3_SHACPP = [
    *DISPERSION_N3_MODELS, "algorithm=shacpp", "experiment=shacpp_cpu", "experiment.on_policy_n_envs_per_worker=64",
    "experiment.on_policy_collected_frames_per_batch=2048", "experiment.on_policy_minibatch_size=512",
    "experiment.on_policy_n_minibatch_iters=16", "experiment.evaluation_interval=61440",
    "experiment.max_n_frames=368640", "algorithm.reward_slots=[4,3]", "algorithm.critic_slots=[4,3]",
    "algorithm.critic_centralised=false", "algorithm.actor_value_gradient=30",
    "algorithm.world_detached_features=integer", "algorithm.action_mean_coef=1", "algorithm.action_mean_relative=true",
    "algorithm.action_mean_coef_final=0.1",
]  # fmt: skip
DISPERSION_N3_MAPPO = [*DISPERSION_N3_MODELS, "algorithm=mappo", "experiment.max_n_frames=368640"]
SAMPLING_N3_MODELS = [
    "task=vmas/sampling", "task.n_agents=3", "model=layers/transformer", "model@critic_model=layers/transformer",
    "experiment.evaluation_episodes=128", "experiment.evaluation_deterministic_actions=true",
]  # fmt: skip
SAMPLING_N3_SHACPP = [
    *SAMPLING_N3_MODELS, "algorithm=shacpp", "experiment=shacpp_cpu", "experiment.max_n_frames=131072",
    "experiment.evaluation_interval=10240", "algorithm.world_rollout=one_pass", "algorithm.model_epochs=30",
    "algorithm.world_minibatch_size=100", "algorithm.world_model_max_steps=150",
]  # fmt: skip
SAMPLING_N3_MAPPO = [
    *SAMPLING_N3_MODELS, "algorithm=mappo", "experiment.max_n_frames=132000", "experiment.evaluation_interval=12000",
]  # fmt: skip


@pytest.mark.parametrize(
    "task, shacpp_measured, mappo_measured",
    [
        ("dispersion_n3", DISPERSION_N3_SHACPP, DISPERSION_N3_MAPPO),
        ("sampling_n3", SAMPLING_N3_SHACPP, SAMPLING_N3_MAPPO),
    ],
)
def test_task_presets_compose_the_measured_commands(task: str, shacpp_measured: list[str], mappo_measured: list[str]):
    """``+preset=<task>_shacpp`` is, key for key, the SHAC++ command measured ahead of MAPPO, and
    ``algorithm=mappo +preset=<task>`` gives MAPPO the same task, policy, critic, evaluation and frames, at its own
    experiment's collections (a SHAC++ evaluation interval would not divide them)."""
    with initialize_config_module(config_module="benchmarl.conf", version_base=None):
        preset = compose(config_name="config", overrides=[f"+preset={task}_shacpp"])
        measured = compose(config_name="config", overrides=shacpp_measured)
        mappo = compose(config_name="config", overrides=["algorithm=mappo", f"+preset={task}"])
        mappo_by_hand = compose(
            config_name="config", overrides=[*mappo_measured, "experiment.loggers=[csv]", "experiment.render=false"]
        )
    assert OmegaConf.to_container(preset) == OmegaConf.to_container(measured)
    assert OmegaConf.to_container(mappo) == OmegaConf.to_container(mappo_by_hand)
    assert mappo.experiment.evaluation_interval % mappo.experiment.on_policy_collected_frames_per_batch == 0
    assert preset.experiment.evaluation_interval % preset.experiment.on_policy_collected_frames_per_batch == 0


def test_transformer_config_loads_from_the_package_yaml():
    assert TransformerConfig.get_from_yaml() == TransformerConfig()


@pytest.mark.parametrize("name, config", [("shac", ShacConfig), ("shacp", ShacpConfig), ("shacpp", ShacppConfig)])
def test_algorithm_defaults_have_one_source(name: str, config):
    """The dataclass holds every default: the command line's ``algorithm=<name>`` and Python's ``get_from_yaml``
    give exactly its values."""
    with initialize_config_module(config_module="benchmarl.conf", version_base=None):
        composed = compose(config_name="config", overrides=[f"algorithm={name}", "task=vmas/transport"])
    assert OmegaConf.to_container(composed.algorithm) == dataclasses.asdict(config())
    assert config.get_from_yaml() == config()
    assert composed.experiment.wandb_extra_kwargs == {"offline": True}


def transformer(
    n_agents: int = 3, *, centralised: bool, share_params: bool, input_has_agent_dim: bool = True, **config
):
    if input_has_agent_dim:
        input_spec = Composite({"agents": Composite({"observation": Unbounded((n_agents, 5))}, shape=(n_agents,))})
    else:  # a global state
        input_spec = Composite({"state": Unbounded((5,))})
    if share_params and centralised:
        output_spec = Composite({"out": Unbounded((4,))})
    else:
        output_spec = Composite({"agents": Composite({"out": Unbounded((n_agents, 4))}, shape=(n_agents,))})
    return TransformerConfig(hidden_size=16, feedforward_size=32, **config).get_model(
        input_spec=input_spec, output_spec=output_spec, agent_group="agents", input_has_agent_dim=input_has_agent_dim,
        n_agents=n_agents, centralised=centralised, share_params=share_params, device="cpu", action_spec=Composite(),
    )  # fmt: skip


def test_transformer_model_head_init_scale_reaches_each_network():
    """``model.head_init_scale`` reaches every agent's transformer (per-agent parameters too)."""
    torch.manual_seed(0)
    default = transformer(centralised=False, share_params=False)
    torch.manual_seed(0)
    scaled = transformer(centralised=False, share_params=False, head_init_scale=0.01)
    for small, large in zip(scaled.transformers, default.transformers):
        torch.testing.assert_close(small.head.weight, 0.01 * large.head.weight)


@pytest.mark.parametrize("centralised", [False, True])
@pytest.mark.parametrize("share_params", [False, True])
def test_transformer_model_follows_benchmarl_conventions(centralised: bool, share_params: bool):
    """Shared parameters: agent-permutation equivariant outputs, pooled (invariant, no agent dim) when centralised.
    Per-agent parameters: agent j's output comes from its own network."""
    torch.manual_seed(0)
    model = transformer(centralised=centralised, share_params=share_params)
    observation = torch.randn(7, 3, 5)
    permutation = torch.tensor([2, 0, 1])

    def output(x):
        return model(TensorDict({"agents": {"observation": x}}, [7]))["out" if share_params and centralised else ("agents", "out")]

    out = output(observation)
    assert out.shape == ((7, 4) if share_params and centralised else (7, 3, 4))
    permuted = output(observation[:, permutation])
    if share_params and centralised:
        torch.testing.assert_close(permuted, out)
    elif share_params:
        torch.testing.assert_close(permuted, out[:, permutation])
    else:  # each agent's own network: permuting the inputs is not permuting the outputs
        assert not torch.allclose(permuted, out[:, permutation])


def test_transformer_model_refuses_inputs_without_agents():
    with pytest.raises(ValueError, match="Choose another critic model"):
        transformer(centralised=True, share_params=True, input_has_agent_dim=False)


def slot_set(n_agents: int = 3, *, share_params: bool, centralised: bool = False, features: int = 10, **config):
    input_spec = Composite(
        {"agents": Composite({"observation": Unbounded((n_agents, features))}, shape=(n_agents,))}
    )
    output_spec = Composite({"agents": Composite({"out": Unbounded((n_agents, 2))}, shape=(n_agents,))})
    return SlotSetModelConfig(slots=[4, 3], hidden_size=16, num_cells=[16], **config).get_model(
        input_spec=input_spec, output_spec=output_spec, agent_group="agents", input_has_agent_dim=True,
        n_agents=n_agents, centralised=centralised, share_params=share_params, device="cpu", action_spec=Composite(),
    )  # fmt: skip


@pytest.mark.parametrize("share_params", [True, False])
def test_slot_set_model_reads_each_agents_own_slots_in_any_order(share_params: bool):
    """Agent i's output reads agent i's observation only, does not change when its slots are reordered, and (with
    shared parameters) is the same function for every agent."""
    torch.manual_seed(0)
    model = slot_set(share_params=share_params)
    observation = torch.randn(7, 3, 10, requires_grad=True)
    out = model(TensorDict({("agents", "observation"): observation}, [7]))["agents", "out"]
    assert out.shape == (7, 3, 2)
    (gradient,) = torch.autograd.grad(out[:, 1].sum(), observation)
    assert (gradient.abs().sum((0, 2)) > 0).tolist() == [False, True, False]
    slots = observation[..., 4:].unflatten(-1, (2, 3))
    slots_reordered = torch.cat([observation[..., :4], slots.flip(-2).flatten(-2)], -1)
    reordered = model(TensorDict({("agents", "observation"): slots_reordered}, [7]))["agents", "out"]
    torch.testing.assert_close(reordered, out)
    agents = torch.tensor([2, 0, 1])
    permuted = model(TensorDict({("agents", "observation"): observation[:, agents]}, [7]))["agents", "out"]
    if share_params:
        torch.testing.assert_close(permuted, out[:, agents])
    else:
        assert not torch.allclose(permuted, out[:, agents])


def test_slot_set_model_refuses_a_centralised_critic_and_a_layout_that_does_not_fit():
    with pytest.raises(ValueError, match="it cannot be a centralised critic"):
        slot_set(share_params=True, centralised=True)
    with pytest.raises(ValueError, match="hold 11 features, whose last 7 are not a whole number of slots"):
        slot_set(share_params=True, features=11)


def test_slot_set_config_loads_from_the_package_yaml():
    with pytest.raises(ValueError, match=r"model.slots=None must be \[own_features, slot_features\]"):
        SlotSetModelConfig.get_from_yaml()


@pytest.mark.parametrize(
    "name, scenario",
    [
        ("transport", DifferentiableTransport),
        ("sampling", DifferentiableSampling),
        ("navigation", DifferentiableNavigation),
    ],
)
def test_differentiable_tasks_are_benchmarl_tasks_filed_under_the_vmas_name(name, scenario):
    task = task_config_registry[f"vmas/{name}_differentiable"].get_from_yaml()
    assert task.config == VmasTask[name.upper()].get_from_yaml().config  # BenchMARL's settings
    env = task.get_env_fun(num_envs=2, continuous_actions=True, seed=0, device="cpu")()
    assert isinstance(env._env.scenario, scenario) and task.name.lower() == name and task.env_name() == "vmas"
    # SHAC++ and MAPPO need no simulator graph, but a task that names the scenario keeps it, with its settings.
    rebuilt = rebuild_vmas_env(TransformedEnv(env), task, simulator_graph=False, seed=0)
    assert isinstance(rebuilt.base_env._env.scenario, scenario) and not rebuilt.base_env._env.grad_enabled
    if scenario is DifferentiableTransport:
        task.config["approach_reward"] = True
        rebuilt = rebuild_vmas_env(TransformedEnv(env), task, simulator_graph=False, seed=0)
        assert rebuilt.base_env._env.scenario.approach_reward
        assert ("agents", "info", "task_reward") in rebuilt.observation_spec.keys(True)


def test_balance_centred_is_benchmarl_balance_on_the_centred_scenario(tmp_path: Path):
    """``task=vmas/balance_centred``: BenchMARL's balance settings, this package's scenario for every algorithm (SHAC
    included: its reward is differentiable as VMAS's), filed under its own name."""
    task = task_config_registry["vmas/balance_centred"].get_from_yaml()
    assert task.config == VmasTask.BALANCE.get_from_yaml().config
    env = task.get_env_fun(num_envs=2, continuous_actions=True, seed=0, device="cpu")()
    assert isinstance(env._env.scenario, CentredRotationBalance) and task.name.lower() == "balance_centred"
    result = benchmarl_run(tmp_path, "algorithm=shac", "task=vmas/balance_centred", "experiment.max_n_iters=1", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(tmp_path.rglob("shac_balance_centred_*"))
    assert all(0 < g < float("inf") for g in scalar(tmp_path, "train_agents_actor_grad_norm"))


def test_shacpp_on_vmas_balance_reads_the_rotation_as_an_angle_or_warns_and_names_the_centred_task(tmp_path: Path):
    """The spliced model reads balance's rotation (feature 15, modulo π) and wheel's (10) as angles by default; SHAC++
    without that (the one-pass model, or ``world_periodic_features=[]``) warns and names the centred task."""
    for config in (ShacppConfig(world_rollout="one_pass"), ShacppConfig(world_periodic_features=[])):
        with pytest.warns(UserWarning, match="jumps by pi .* task=vmas/balance_centred"):
            experiment = tiny_experiment(config, tmp_path / "plain", task=VmasTask.BALANCE, max_n_iters=1)
        assert experiment.algorithm.periodic_features == []
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*balance_centred")
        experiment = tiny_experiment(ShacppConfig(), tmp_path / "default", task=VmasTask.BALANCE, max_n_iters=1)
        transition = experiment.algorithm.update.groups["agents"].source.world_model.module.transition
        assert transition.periodic.index.tolist() == [15] and transition.periodic.period.tolist() == [pytest.approx(math.pi)]
        tiny_experiment(ShacppConfig(), tmp_path / "centred", task=CentredVmasTask.BALANCE_CENTRED, max_n_iters=1)
        tiny_experiment(ShacConfig(), tmp_path / "shac", task=VmasTask.BALANCE, max_n_iters=1, collect_with_grad=True)
    wheel = tiny_experiment(ShacppConfig(), tmp_path / "wheel", task=VmasTask.WHEEL, max_n_iters=1, n_agents=4)
    assert wheel.algorithm.periodic_features == [[10, math.pi]]
    transport = tiny_experiment(ShacppConfig(), tmp_path / "transport", max_n_iters=1)
    assert transport.algorithm.periodic_features == []


@pytest.mark.parametrize("next_observation", [False, True])
def test_reward_model_reads_what_the_authors_reads(tmp_path: Path, next_observation: bool):
    """The reward model reads (o_t, a_t), as the authors' (reading o_{t+1} lets it read dispersion's reward off the
    eaten flags); (o_t, a_t, o_{t+1}) is an option."""
    config = dataclasses.replace(ShacppConfig(), reward_uses_next_observation=next_observation)
    experiment = tiny_experiment(config, tmp_path, task=PaperVmasTask.DISPERSION, max_n_iters=1)
    reward_model = experiment.algorithm.update.groups["agents"].source.reward_model
    expected = {("agents", "observation"), ("agents", "action")}
    assert set(reward_model.in_keys) == expected | ({("next", "agents", "observation")} if next_observation else set())


def test_reward_observation_noise_reaches_the_reward_models_loss_only(tmp_path: Path):
    """``algorithm.reward_observation_noise`` perturbs the observations the reward model trains on (under the group's
    key); the actor differentiates the model on clean ones, and the paper's default adds none."""
    noisy = tiny_experiment(
        ShacppConfig(reward_observation_noise=0.2), tmp_path / "noisy", task=PaperVmasTask.DISPERSION, max_n_iters=1
    )
    loss = noisy.algorithm.update.groups["agents"].source.reward.loss
    assert loss.observation_noise == 0.2 and loss.tensor_keys.observation == ("agents", "observation")
    batch = next(iter(noisy.collector)).reshape(-1).detach()
    perturbed = loss._with_noisy_observations(batch)  # private: the loss's own perturbation, checked for its scale
    noise = perturbed["agents", "observation"] - batch["agents", "observation"]
    assert 0.18 < noise.std().item() < 0.22 and torch.equal(perturbed["agents", "action"], batch["agents", "action"])
    default = tiny_experiment(ShacppConfig(), tmp_path / "default", task=PaperVmasTask.DISPERSION, max_n_iters=1)
    default_loss = default.algorithm.update.groups["agents"].source.reward.loss
    assert default_loss.observation_noise == 0 and default_loss.huber_delta is None  # the paper's squared error


def test_reward_huber_delta_sets_the_reward_models_loss(tmp_path: Path):
    """``algorithm.reward_huber_delta`` turns the reward model's squared error into Huber's loss at that residual."""
    config = ShacppConfig(reward_huber_delta=0.05)
    experiment = tiny_experiment(config, tmp_path, task=PaperVmasTask.DISPERSION, max_n_iters=1)
    loss = experiment.algorithm.update.groups["agents"].source.reward.loss
    batch = next(iter(experiment.collector)).reshape(-1).detach()
    predicted = loss.reward_model(batch.clone(False))["agents", "predicted_reward"]
    expected = torch.nn.functional.huber_loss(predicted, batch["next", "agents", "reward"], delta=0.05)
    assert loss.huber_delta == 0.05
    torch.testing.assert_close(loss(batch)["loss_reward"], expected)


def agents_read_by_agent_0(experiment: Experiment, model, output: str) -> tuple[list[bool], bool]:
    """Which agents' observations agent 0's ``output`` reads, and whether both agents' outputs are equal."""
    batch = next(iter(experiment.collector)).reshape(-1)[:4].detach()
    observation = batch["agents", "observation"].clone().requires_grad_(True)
    batch["agents", "observation"] = observation
    predicted = model(batch)["agents", output]
    assert predicted.shape == (4, 2, 1)  # [batch, agents, 1]
    (gradient,) = torch.autograd.grad(predicted[:, 0].sum(), observation)
    return (gradient.abs().sum((0, 2)) > 0).tolist(), torch.equal(predicted[:, 0], predicted[:, 1])


@pytest.mark.parametrize("centralised", [True, False])
@pytest.mark.parametrize("network, output", [("reward", "predicted_reward"), ("critic", "state_value")])
def test_centralised_sets_what_each_agents_reward_and_value_read(
    tmp_path: Path, network: str, output: str, centralised: bool
):
    """With ``reward_centralised`` / ``critic_centralised`` true the shared reward model and critic pool all agents'
    inputs into one output for the group (the critic's default); with ``false`` agent i's output reads agent i's
    input alone."""
    config = ShacppConfig(**{f"{network}_centralised": centralised})
    experiment = tiny_experiment(config, tmp_path, task=PaperVmasTask.DISPERSION, max_n_iters=1)
    if network == "reward":
        model = experiment.algorithm.update.groups["agents"].source.reward.loss.reward_model
    else:
        model = experiment.losses["agents"].value_network
    reads, pooled = agents_read_by_agent_0(experiment, model, output)
    assert (reads, pooled) == (([True, True], True) if centralised else ([True, False], False))


@pytest.mark.parametrize("task, declared_own", [(PaperVmasTask.DISPERSION, True), (VmasTask.TRANSPORT, False)])
def test_the_default_reward_model_follows_the_rewards_the_task_declares(
    tmp_path: Path, task, declared_own: bool
):
    """By default (``reward_centralised=None``) each agent's reward is read off its own transition where the task
    declares the rewards each agent's own (the paper's dispersion: ``share_reward: False``), and pooled over all
    agents where it declares nothing (transport's team reward); with one agent the model stays centralised."""
    experiment = tiny_experiment(ShacppConfig(), tmp_path, task=task, max_n_iters=1)
    model = experiment.algorithm.update.groups["agents"].source.reward.loss.reward_model
    reads, pooled = agents_read_by_agent_0(experiment, model, "predicted_reward")
    assert (reads, pooled) == (([True, False], False) if declared_own else ([True, True], True))
    single = tiny_experiment(ShacppConfig(), tmp_path / "one", task=task, n_agents=1, max_n_iters=1)
    assert single.algorithm.reward_is_centralised("agents")


def test_reward_slots_sums_each_agents_reward_over_its_observations_slots(tmp_path: Path):
    """``algorithm.reward_slots=[4, 3]`` on the paper's dispersion: the reward model is a
    :class:`~torchrl_shacpp.modules.SlotSumReward` (its own sizes, whatever the ``critic_model``) reading each
    agent's own transition, and it is what the reward model's loss trains."""
    config = ShacppConfig(reward_slots=[4, 3])
    experiment = tiny_experiment(config, tmp_path, task=PaperVmasTask.DISPERSION, max_n_iters=1)
    model = experiment.algorithm.update.groups["agents"].source.reward.loss.reward_model
    network = model.module
    assert isinstance(network, SlotSumReward) and (network.own_features, network.slot_features) == (4, 3)
    widths = [layer.out_features for layer in network.slot_score.modules() if isinstance(layer, nn.Linear)]
    assert widths == [256, 256, 1]
    reads, pooled = agents_read_by_agent_0(experiment, model, "predicted_reward")
    assert (reads, pooled) == ([True, False], False)


def test_critic_slots_gives_each_agent_a_value_over_its_observations_slots(tmp_path: Path):
    """``algorithm.critic_slots=[4, 3] critic_centralised=false`` on the paper's dispersion: the critic is a
    :class:`~torchrl_shacpp.modules.SlotSet` reading each agent's own observation."""
    config = ShacppConfig(critic_slots=[4, 3], critic_centralised=False)
    experiment = tiny_experiment(config, tmp_path, task=PaperVmasTask.DISPERSION, max_n_iters=1)
    critic = experiment.losses["agents"].value_network
    assert isinstance(critic.module, SlotSet)
    reads, pooled = agents_read_by_agent_0(experiment, critic, "state_value")
    assert (reads, pooled) == ([True, False], False)


@pytest.mark.parametrize(
    "task, overrides, own",
    [
        (VmasTask.NAVIGATION, {}, True),  # shared_rew: False
        (VmasTask.NAVIGATION, {"shared_rew": True}, False),
        (VmasTask.SAMPLING, {}, True),
        (VmasTask.DISCOVERY, {}, False),  # shared_reward: True
        (PaperVmasTask.DISPERSION, {}, True),  # share_reward: False
        (VmasTask.TRANSPORT, {}, False),  # declares nothing
        (VmasTask.GIVE_WAY, {}, False),
    ],
)
def test_rewards_are_each_agents_own_reads_the_vmas_task_config(task, overrides: dict, own: bool):
    """Each VMAS scenario names its shared-reward argument its own way; a task that names none has a team reward."""
    task = task.get_from_yaml()
    task.config.update(overrides)
    assert rewards_are_each_agents_own(task) is own


def test_models_see_the_actions_the_simulator_applies(tmp_path: Path):
    """The policy clamps its samples to the action box, as the authors' does and as the simulator applies them: with
    sigma = 1 about a third of the components would otherwise leave the box, and the world and reward models would
    learn from actions VMAS never applied; the re-attached graph gives clamped components no gradient."""
    experiment = tiny_experiment(ShacppConfig(), tmp_path, task=PaperVmasTask.DISPERSION, max_n_iters=1)
    batch = next(iter(experiment.collector))
    action = batch["agents", "action"]
    assert action.abs().max() <= 1 and (action.abs() == 1).float().mean() > 0.15
    unclamped = tiny_experiment(
        ShacppConfig(clamp_actions=False), tmp_path / "raw", task=PaperVmasTask.DISPERSION, max_n_iters=1
    )
    assert next(iter(unclamped.collector))["agents", "action"].abs().max() > 1
    window = experiment.algorithm.update.groups["agents"].source.differentiable_window(batch)
    window["agents", "action"].sum().backward()
    policy = experiment.algorithm.get_policy_for_loss("agents")
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters())


@pytest.mark.parametrize("clamped_mean", [False, True])
def test_the_deterministic_action_follows_the_config(tmp_path: Path, clamped_mean: bool):
    """``algorithm.deterministic_clamped_mean`` picks the policy's deterministic action, which BenchMARL's
    deterministic evaluation takes: the clamped action's mean (inside the box, below the clamped μ's magnitude where
    μ is away from 0), or μ clamped."""
    experiment = tiny_experiment(ShacppConfig(deterministic_clamped_mean=clamped_mean), tmp_path, max_n_iters=1)
    policy = experiment.algorithm.get_policy_for_collection()
    observation = experiment.test_env.reset()
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        action = policy(observation.clone())["agents", "action"]
    loc = policy(observation.clone())["agents", "loc"].clamp(-1, 1)
    if clamped_mean:
        assert (action.abs() < loc.abs() - 1e-4)[loc.abs() > 0.05].all()
    else:
        torch.testing.assert_close(action, loc)


def test_the_actor_value_gradient_follows_the_config(tmp_path: Path):
    """``algorithm.actor_value_gradient`` reaches every group's actor loss (its maths: test_objectives)."""
    for value_gradient in (1.0, 0.25):
        experiment = tiny_experiment(
            ShacppConfig(actor_value_gradient=value_gradient), tmp_path / str(value_gradient), max_n_iters=1
        )
        assert experiment.algorithm.update.groups["agents"].actor_loss.value_gradient == value_gradient


@pytest.mark.parametrize("world_rollout", ["spliced", "one_pass"])
def test_the_actor_world_gradient_follows_the_config_through_either_world_model(tmp_path: Path, world_rollout: str):
    """``algorithm.actor_world_gradient`` reaches every group's actor loss, whose steps then scale the gradient through
    either world model's action input (its maths: test_objectives)."""
    config = ShacppConfig(actor_world_gradient=2.0, world_rollout=world_rollout)
    experiment = tiny_experiment(config, tmp_path, max_n_iters=2)
    actor_loss = experiment.algorithm.update.groups["agents"].actor_loss
    assert actor_loss.world_gradient == 2.0
    before = [p.detach().clone() for p in actor_loss.actor_network.parameters()]
    experiment.run()
    after = list(actor_loss.actor_network.parameters())
    assert all(p.isfinite().all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before))


@pytest.mark.parametrize("algorithm", ["shac", "shacpp"])
def test_the_actor_steps_are_bounded_by_the_config(tmp_path: Path, algorithm: str):
    """``algorithm.actor_max_mean_change`` shrinks the actor's steps (SHAC's one per collection on the simulator's
    graph, SHAC++'s one per window) whose policy mean moves further on their observations, and logs by how much."""
    result = benchmarl_run(
        tmp_path, f"algorithm={algorithm}", "task=vmas/transport", "experiment.max_n_iters=3",
        "algorithm.actor_max_mean_change=1e-4", *TINY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    changes = scalar(tmp_path, "train_agents_actor_mean_change")  # the steps' means, before shrinking
    scales = scalar(tmp_path, "train_agents_actor_step_scale")
    assert len(changes) == len(scales) == 3
    assert all(change > 1e-4 for change in changes)  # Adam's steps at lr 1e-3 move the mean further
    assert all(0 < scale < 1 for scale in scales)


@pytest.mark.parametrize(
    "algorithm, relative, gate",
    [("shac", "false", 0), ("shacpp", "false", 0), ("shacpp", "true", 0), ("shacpp", "true", 1)],
)
def test_the_control_cost_follows_the_config_and_is_logged(tmp_path: Path, algorithm: str, relative: str, gate: int):
    """``algorithm.action_mean_coef`` reaches the actor's objective (SHAC's step on the simulator's graph, SHAC++'s
    per window) and is logged as ``action_mean_loss``: c times the policy mean's mean square, with
    ``action_mean_relative`` times the return gradient's running mean, which SHAC++'s graph gives, and with
    ``action_mean_gate`` over the elements whose return gradient is below the gate times that mean only, whose share
    is logged (its maths: test_objectives)."""
    result = benchmarl_run(
        tmp_path, f"algorithm={algorithm}", "task=vmas/transport", "experiment.max_n_iters=2",
        "algorithm.action_mean_coef=0.5", f"algorithm.action_mean_relative={relative}",
        f"algorithm.action_mean_gate={gate}", *TINY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    costs = scalar(tmp_path, "train_agents_action_mean_loss")
    assert len(costs) == 2 and all(cost > 0 for cost in costs)
    weights = scalar(tmp_path, "train_agents_action_mean_weight")
    assert all(weight > 0 for weight in weights) and (weights == [0.5, 0.5]) == (relative == "false")
    shares = scalar(tmp_path, "train_agents_action_mean_share")  # gate 1: the elements whose |h| is below ḡ
    assert all(0 < share < 1 for share in shares) if gate else shares == [1.0, 1.0]


def test_the_control_cost_coefficient_falls_on_its_schedule(tmp_path: Path):
    """``algorithm.action_mean_coef_final``: the coefficient each collection's actor steps apply falls linearly from
    ``action_mean_coef`` to it, c_k = c_0 + (c_final - c_0) k / K (1, 0.7, 0.4 over K = 3 from 1 to 0.1)."""
    result = benchmarl_run(
        tmp_path, "algorithm=shacpp", "task=vmas/transport", "experiment.max_n_iters=3",
        "algorithm.action_mean_coef=1", "algorithm.action_mean_coef_final=0.1", *TINY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert scalar(tmp_path, "train_agents_action_mean_weight") == pytest.approx([1.0, 0.7, 0.4], abs=1e-6)


def test_actor_steps_above_the_skip_norm_are_skipped_and_counted(tmp_path: Path):
    """``algorithm.actor_skip_grad_norm`` below every gradient's norm: each of SHAC++'s actor steps is skipped and
    counted (the count is cumulative)."""
    result = benchmarl_run(
        tmp_path, "algorithm=shacpp", "task=vmas/transport", "experiment.max_n_iters=2",
        "algorithm.actor_skip_grad_norm=1e-12", *TINY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    steps, skipped = scalar(tmp_path, "train_agents_actor_steps"), scalar(tmp_path, "train_agents_skipped_actor_steps")
    assert len(steps) == 2 and skipped == [steps[0], steps[0] + steps[1]] and all(count > 0 for count in steps)
    assert all(norm > 1e-12 for norm in scalar(tmp_path, "train_agents_actor_grad_norm"))


def test_outlier_ratio_bounds_the_action_gradients_that_reach_shacpps_policy(tmp_path: Path):
    """``actor_grad_outlier_ratio=1.5``: the policy's gradient on a window is the unbounded action gradient with every
    agent-step above 1.5 times the median one scaled down to it, back-propagated through the policy (the
    action-bound penalty off, so that the actions are the policy's only path)."""
    config = ShacppConfig(actor_grad_outlier_ratio=1.5, action_bound_coef=0.0)
    experiment = tiny_experiment(config, tmp_path, max_n_iters=1)
    window = next(iter(experiment.collector)).detach()
    update = experiment.algorithm.update.groups["agents"]
    policy = [p for p in update.source.actor.parameters() if p.requires_grad]
    assert update.source.action_grad_outlier_ratio == 1.5
    assert update.source.world_model.module.max_gradient_growth is None  # the other bound, off by default

    update.source.action_grad_outlier_ratio = None
    unbounded = update.source.differentiable_window(window)
    action = unbounded.get(("agents", "action"))
    (gradient,) = torch.autograd.grad(update.actor_loss(unbounded)["loss_actor"], action, retain_graph=True)
    norms = gradient.norm(dim=-1, keepdim=True)
    limit = 1.5 * norms[norms > 0].median()
    assert (norms > limit).any()
    expected = torch.autograd.grad(action, policy, grad_outputs=gradient * (limit / norms).clamp(max=1.0))

    update.source.action_grad_outlier_ratio = 1.5
    bounded = update.source.differentiable_window(window)
    received = torch.autograd.grad(update.actor_loss(bounded)["loss_actor"], policy)
    for got, want in zip(received, expected):
        torch.testing.assert_close(got, want)


def test_world_gradient_growth_reaches_the_spliced_window_the_actor_differentiates(tmp_path: Path):
    experiment = tiny_experiment(ShacppConfig(world_gradient_growth=1.5), tmp_path, max_n_iters=1)
    update = experiment.algorithm.update.groups["agents"]
    assert update.actor_loss.world_model is update.source.world_model
    assert update.source.world_model.module.max_gradient_growth == 1.5
    assert update.source.world_model.module.detached_features is None  # off by default
    assert update.source.world_model.module.trusted_error_ratio is None


def test_world_trusted_error_ratio_reaches_the_spliced_window_from_the_command_line(tmp_path: Path):
    experiment = tiny_experiment(ShacppConfig(world_trusted_error_ratio=10.0), tmp_path, max_n_iters=1)
    update = experiment.algorithm.update.groups["agents"]
    assert update.actor_loss.world_model is update.source.world_model
    assert update.source.world_model.module.trusted_error_ratio == 10.0


@pytest.mark.parametrize("detached", ["integer", [0, 2]])
def test_world_detached_features_reach_the_spliced_window_the_actor_differentiates(tmp_path: Path, detached):
    experiment = tiny_experiment(ShacppConfig(world_detached_features=detached), tmp_path, max_n_iters=1)
    module = experiment.algorithm.update.groups["agents"].source.world_model.module
    assert module.detached_features == (detached if isinstance(detached, str) else tuple(detached))


def test_world_periodic_features_from_the_command_line_reach_the_transition_model_and_its_loss(tmp_path: Path):
    """Balance's line rotation (feature 15, modulo π) as a hydra list of pairs: the spliced model reads it as cos/sin
    and its loss wraps it; a run trains on it; an index beyond the observation is refused at set-up."""
    periodic = "algorithm.world_periodic_features=[[15,3.141592653589793]]"
    common = ("algorithm=shacpp", "task=vmas/balance", "algorithm.model_train_every=2", *TINY)
    for folder in ("ok", "bad"):
        (tmp_path / folder).mkdir()
    result = benchmarl_run(tmp_path / "ok", *common, periodic, "experiment.max_n_iters=3")
    assert result.returncode == 0, result.stderr[-3000:]
    losses = scalar(tmp_path / "ok", "train_agents_loss_world")
    assert losses and all(0 <= loss < float("inf") for loss in losses)
    result = benchmarl_run(tmp_path / "bad", *common, "algorithm.world_periodic_features=[[16,3.14]]")
    assert result.returncode != 0
    assert "periodic features [16] name a feature beyond the observation's 16: give indices below 16" in result.stderr
    experiment = tiny_experiment(ShacppConfig(world_periodic_features=[[0, 2.0]]), tmp_path / "api", max_n_iters=1)
    update = experiment.algorithm.update.groups["agents"]
    world = update.source.world_model.module.transition
    assert world.periodic.index.tolist() == [0] and world.periodic.period.tolist() == [2.0]
    assert update.source.world.loss.periodic is world.periodic


class KeepBatch(Callback):
    """Keeps the last collection (the algorithm's update writes its value targets into it afterwards)."""

    def on_batch_collected(self, batch) -> None:
        self.batch = batch


def test_the_critic_learns_the_return_of_the_info_entry_it_is_given(tmp_path: Path):
    """``algorithm.critic_reward=task_reward`` on transport with the approach potential paid: the critic's targets
    follow VMAS's reward (the info's ``task_reward``) and not the shaped reward the actor is paid."""
    keep = KeepBatch()
    experiment = tiny_experiment(
        ShacppConfig(critic_reward="task_reward"), tmp_path, task=task_config_registry["vmas/transport_differentiable"],
        task_config={"approach_reward": True}, callbacks=[keep], max_n_iters=1,
    )  # fmt: skip
    experiment.run()
    value_loss = experiment.algorithm.update.groups["agents"].value_loss
    batch = keep.batch.clone()
    targets = value_loss.value_targets(batch)
    batch["next", "agents", "reward"] += 1.0
    torch.testing.assert_close(value_loss.value_targets(batch), targets)
    batch["next", "agents", "info", "task_reward"] += 1.0
    assert (value_loss.value_targets(batch) > targets + 0.5).all()
    refusal = r"critic_reward='task_reward' names .*\(its info: none\).* critic_reward=null"
    with pytest.raises(ValueError, match=refusal):
        tiny_experiment(ShacppConfig(critic_reward="task_reward"), tmp_path / "vmas", max_n_iters=1)


@pytest.mark.parametrize("critic_lr, expected", [(3e-3, 3e-3), (None, 5e-5)])
def test_the_algorithm_owns_its_critic_learning_rate(tmp_path: Path, critic_lr, expected: float):
    """BenchMARL's optimiser for the critic steps at ``critic_lr``, not at ``experiment.lr`` (MAPPO's 5e-5), unless
    ``critic_lr`` is None; the actor steps at ``actor_lr``."""
    config = dataclasses.replace(ShacConfig(), critic_lr=critic_lr, actor_lr=2e-3)
    experiment = tiny_experiment(config, tmp_path, max_n_iters=1, collect_with_grad=True, lr=5e-5)
    (critic_optimizer,) = experiment.optimizers["agents"].values()
    assert [group["lr"] for group in critic_optimizer.param_groups] == [expected]
    actor_optimizer = experiment.algorithm.update.groups["agents"].actor_step.optimizer
    assert [group["lr"] for group in actor_optimizer.param_groups] == [2e-3]


@pytest.mark.parametrize(
    "config, collect_with_grad, lr_final, floor",
    [(ShacConfig(), True, None, 1e-5), (ShacppConfig(), False, None, 1e-5), (ShacppConfig(), False, 1e-3, 1e-3)],
)
def test_linear_lr_schedule_sets_actor_and_critic_rates_from_the_iteration(
    tmp_path: Path, config, collect_with_grad, lr_final, floor
):
    """SHAC's schedule: at collection k of K the actor and the critic step at lr_0 + (lr_final - lr_0) k / K, from
    their own initial rates, lr_final SHAC's 1e-5 unless set, and the actor's rate is logged."""
    logged = []
    experiment = tiny_experiment(
        dataclasses.replace(config, lr_schedule="linear", lr_final=lr_final, actor_lr=2e-3, critic_lr=4e-3), tmp_path,
        max_n_iters=4, collect_with_grad=collect_with_grad,
    )  # fmt: skip
    log = experiment.logger.log
    experiment.logger.log = lambda values, step: (logged.append(values.get("train/agents/actor_lr")), log(values, step))
    experiment.run()
    expected = [lr_0 + (floor - lr_0) * 3 / 4 for lr_0 in (2e-3, 4e-3)]
    actor_optimizer = experiment.algorithm.update.groups["agents"].actor_step.optimizer
    (critic_optimizer,) = experiment.optimizers["agents"].values()
    lrs = [optimizer.param_groups[0]["lr"] for optimizer in (actor_optimizer, critic_optimizer)]
    assert lrs == pytest.approx(expected, rel=1e-9)
    assert [lr for lr in logged if lr is not None] == pytest.approx([2e-3 + (floor - 2e-3) * k / 4 for k in range(4)])


@pytest.mark.parametrize("algorithm_config", [ShacppConfig, ShacConfig], ids=["shacpp", "shac"])
def test_the_actor_likelihood_ratio_follows_the_config_and_trains(tmp_path: Path, algorithm_config):
    """``algorithm.actor_likelihood_ratio`` reaches every group's actor loss, SHAC++'s windows carry the collecting
    policy's log-probability for its importance ratio (SHAC's are on-policy: none), and the run's actor steps take
    the term, logged beside the actor loss (its maths: test_likelihood_ratio)."""
    graph = dict(collect_with_grad=True) if algorithm_config is ShacConfig else {}
    experiment = tiny_experiment(algorithm_config(actor_likelihood_ratio=0.5), tmp_path, max_n_iters=3, **graph)
    group = experiment.algorithm.update.groups["agents"]
    assert group.actor_loss.likelihood_ratio_weight == 0.5
    assert group.actor_loss.advantage_lmbda == experiment.algorithm.lmbda
    expected_key = ("agents", "sample_log_prob") if algorithm_config is ShacppConfig else None
    assert getattr(group.source, "keys", {}).get("log_prob_key") == expected_key
    logged = []
    original = group.actor_loss.likelihood_ratio_loss
    group.actor_loss.likelihood_ratio_loss = lambda window: logged.append(original(window)) or logged[-1]
    experiment.run()
    assert logged and all(value.requires_grad and value.isfinite() for value in logged)
    assert any(value.item() != 0 for value in logged)
    assert all(p.isfinite().all() for p in group.actor_loss.actor_network.parameters())


@pytest.mark.parametrize("algorithm_config", [ShacppConfig, ShacConfig], ids=["shacpp", "shac"])
def test_the_actor_likelihood_ratio_steps_follow_the_config_and_train(tmp_path: Path, algorithm_config):
    """``algorithm.actor_likelihood_ratio_steps`` gives every group PPO's minibatch steps with their own Adam at
    ``actor_likelihood_ratio_lr`` on the experiment's minibatch size; each collection takes them and logs their loss,
    and the actor stays finite (their maths: test_likelihood_ratio); with ``actor_likelihood_ratio_collections=2``
    they draw from the last two collections. Off (0, the default), the groups have none."""
    graph = dict(collect_with_grad=True) if algorithm_config is ShacConfig else {}
    config = algorithm_config(
        actor_likelihood_ratio_steps=2, actor_likelihood_ratio_lr=2e-4, actor_likelihood_ratio_collections=2
    )
    experiment = tiny_experiment(config, tmp_path, max_n_iters=3, **graph)
    update = experiment.algorithm.update
    group = update.groups["agents"]
    assert update.likelihood_ratio_steps == 2 and update.likelihood_ratio_minibatch_size == 32
    assert update.likelihood_ratio_collections == 2
    assert group.likelihood_ratio_step.optimizer is not group.actor_step.optimizer
    assert group.likelihood_ratio_step.optimizer.param_groups[0]["lr"] == 2e-4
    logged, log = [], experiment.logger.log
    experiment.logger.log = lambda values, step: (
        logged.append(values.get("train/agents/likelihood_ratio_step_loss")), log(values, step)
    )
    experiment.run()
    assert sum(value is not None and math.isfinite(value) for value in logged) == 3
    assert all(p.isfinite().all() for p in group.actor_loss.actor_network.parameters())
    assert len(update.likelihood_ratio_batches) == 2  # the last two of the three collections
    off = tiny_experiment(algorithm_config(), tmp_path / "off", max_n_iters=1, **graph)
    assert off.algorithm.update.groups["agents"].likelihood_ratio_step is None
