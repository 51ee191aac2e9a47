"""Hostile inputs and faults: every misuse is refused early with the key and the fix, non-finite data are survived.

One test per case of ``notes/bad-inputs-probe.md`` that was not already refused clearly (``benchmarks/bad_inputs.py``
runs all of them and writes ``benchmarks/results/bad_inputs.md``).
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import pytest
import torch
from benchmarl.algorithms import MappoConfig
from benchmarl.hydra_config import (
    load_algorithm_config_from_hydra,
    load_model_config_from_hydra,
    load_task_config_from_hydra,
)
from hydra import compose, initialize_config_module
from test_benchmarl import TINY, benchmarl_run, tiny_experiment
from test_objectives import MULTI_AGENT_KEYS, point_mass_window
from toy_env import make_point_mass_env, open_loop_actor, quadratic_critic
from faults import CorruptBatch, diverging_agent
from vmas.scenarios.transport import Scenario as Transport

from torchrl_shacpp.benchmark.runs import load_runs
from torchrl_shacpp.benchmarl import (
    EarlyStopping,
    PaperVmasTask,
    ShacConfig,
    ShacpConfig,
    ShacppConfig,
    SlotSetModelConfig,
    TransformerConfig,
)
from torchrl_shacpp.benchmarl.algorithms.shac import STATE_KEY
from torchrl_shacpp.benchmarl.validation import check_checkpoint_algorithm, check_save_folder, check_task_keys
from torchrl_shacpp.collectors import WindowCollector
from torchrl_shacpp.data import make_stratified_cache
from torchrl_shacpp.envs import make_vmas_env
from torchrl_shacpp.modules import AgentSetTransformer, AxisAttentionWorldModel
from torchrl_shacpp.objectives import SHACActorLoss, TDLambdaValueLoss
from torchrl_shacpp.optim import FiniteGradientStep
from torchrl_shacpp.trainers import CoolDown, WindowUpdate


def raises(error: type[Exception], message: str):
    return pytest.raises(error, match=re.escape(message))


# ---------------------------------------------------------------------------------------------------------------------
# Configuration values, from Python and from the command line


@pytest.mark.parametrize(
    "config, message",
    [
        (lambda: ShacConfig(lmbda=1.5), "algorithm.lmbda=1.5 must be a number in [0, 1]"),
        (lambda: ShacppConfig(lmbda=-0.5), "algorithm.lmbda=-0.5 must be a number in [0, 1]"),
        (lambda: ShacConfig(action_std=0.0), "algorithm.action_std=0.0 must be a finite number > 0"),
        (lambda: ShacConfig(actor_lr=-1e-3), "algorithm.actor_lr=-0.001 must be a finite number > 0"),
        (lambda: ShacConfig(actor_max_grad_norm=-1.0), "algorithm.actor_max_grad_norm=-1.0 must be a finite"),
        (lambda: ShacppConfig(actor_value_gradient=-1.0), "algorithm.actor_value_gradient=-1.0 must be a finite"),
        (lambda: ShacppConfig(actor_likelihood_ratio=-1.0), "algorithm.actor_likelihood_ratio=-1.0 must be a finite"),
        (lambda: ShacConfig(actor_likelihood_ratio_steps=-1), "algorithm.actor_likelihood_ratio_steps=-1 must be an"),
        (lambda: ShacppConfig(actor_likelihood_ratio_lr=0.0), "algorithm.actor_likelihood_ratio_lr=0.0 must be a"),
        (lambda: ShacppConfig(actor_likelihood_ratio_collections=0),
         "algorithm.actor_likelihood_ratio_collections=0 must be an integer >= 1"),
        (lambda: ShacppConfig(actor_likelihood_ratio_collections=8),
         "actor_likelihood_ratio_steps=0 takes none: set actor_likelihood_ratio_steps"),
        (lambda: ShacppConfig(actor_world_gradient=-1.0), "algorithm.actor_world_gradient=-1.0 must be a finite"),
        (lambda: ShacConfig(action_mean_coef=-0.1), "algorithm.action_mean_coef=-0.1 must be a finite"),
        (lambda: ShacConfig(action_mean_relative=True), "algorithm.action_mean_relative=true scales the control cost"),
        (lambda: ShacConfig(action_mean_coef=1.0, action_mean_gate=0.1), "algorithm.action_mean_gate=0.1 compares"),
        (lambda: ShacConfig(action_mean_gate=-0.1), "algorithm.action_mean_gate=-0.1 must be a finite"),
        (lambda: ShacConfig(action_mean_coef_final=0.1), "algorithm.action_mean_coef_final=0.1 is where the"),
        (lambda: ShacConfig(action_mean_coef=1.0, action_mean_coef_final=-1.0), "action_mean_coef_final=-1.0 must be"),
        (lambda: ShacppConfig(actor_max_mean_change=0.0), "algorithm.actor_max_mean_change=0.0 must be a finite"),
        (lambda: ShacppConfig(actor_skip_grad_norm=-1.0), "algorithm.actor_skip_grad_norm=-1.0 must be a finite"),
        (lambda: ShacppConfig(actor_grad_outlier_ratio=0.0), "algorithm.actor_grad_outlier_ratio=0.0 must be a"),
        (lambda: ShacppConfig(world_gradient_growth=0.0), "algorithm.world_gradient_growth=0.0 must be a finite"),
        (lambda: ShacppConfig(world_rollout="one_pass", world_gradient_growth=1.5), "has none: set world_rollout=spl"),
        (lambda: ShacppConfig(world_detached_features="flags"), "algorithm.world_detached_features='flags' must be a"),
        (lambda: ShacppConfig(world_detached_features=[-1]), "algorithm.world_detached_features[0]=-1 must be an"),
        (lambda: ShacppConfig(world_rollout="one_pass", world_detached_features="integer"), "cuts features from the"),
        (lambda: ShacppConfig(world_trusted_error_ratio=0.0), "algorithm.world_trusted_error_ratio=0.0 must be a"),
        (lambda: ShacppConfig(world_rollout="one_pass", world_trusted_error_ratio=10.0), "cuts badly predicted agent"),
        (lambda: ShacppConfig(world_periodic_features=[[15]]), "world_periodic_features=[[15]]: periodic features are [index, period] pairs"),
        (lambda: ShacppConfig(world_periodic_features=[15]), "Give [[index, period], ...], e.g. [[15,3.141592653589793]]"),
        (
            lambda: ShacppConfig(world_rollout="one_pass", world_periodic_features=[[15, 3.14]]),
            "are read and learned by the spliced world model's transition",
        ),
        (lambda: ShacppConfig(world_model_first_epochs=[30]), "algorithm.world_model_first_epochs=[30] gives passes"),
        (lambda: ShacppConfig(world_minibatch_size=0), "algorithm.world_minibatch_size=0 must be an integer >= 1"),
        (lambda: ShacppConfig(world_model_max_steps=100), "algorithm.world_model_max_steps=100 bounds the one-pass"),
        (
            lambda: ShacppConfig(world_rollout="one_pass", world_model_max_steps=0),
            "algorithm.world_model_max_steps=0 must be an integer >= 1",
        ),
        (
            lambda: ShacppConfig(world_rollout="one_pass", world_model_first_epochs=[0]),
            "algorithm.world_model_first_epochs[0]=0 must be an integer >= 1",
        ),
        (lambda: ShacConfig(action_std_final=0.0), "algorithm.action_std_final=0.0 must be a finite number > 0"),
        (lambda: ShacppConfig(learn_std=True, action_std_final=0.3), "algorithm.action_std_final=0.3 schedules a"),
        (lambda: ShacConfig(lr_schedule="cosine"), "algorithm.lr_schedule='cosine' must be one of 'constant'"),
        (lambda: ShacConfig(lr_schedule="linear", lr_final=0.0), "algorithm.lr_final=0.0 must be a finite number > 0"),
        (lambda: ShacppConfig(lr_final=1e-3), "algorithm.lr_final=0.001 is where lr_schedule=linear ends"),
        (lambda: ShacConfig(window_length=2.5), "algorithm.window_length=2.5 must be an integer >= 1"),
        (lambda: ShacConfig(window_length=0), "algorithm.window_length=0 must be an integer >= 1"),
        (lambda: ShacpConfig(cache_size=5), "algorithm.cache_size=5 cannot hold 9 bins (algorithm.reward_bins)"),
        (lambda: ShacpConfig(reward_uniform_share=1.5), "algorithm.reward_uniform_share=1.5 must be a number in [0, 1]"),
        (lambda: ShacppConfig(reward_uniform_share=1.0), "algorithm.reward_uniform_share=1.0 of algorithm.cache_size="),
        (lambda: ShacppConfig(actor_replay_steps=-1), "algorithm.actor_replay_steps=-1 must be an integer >= 0"),
        (lambda: ShacppConfig(actor_replay_windows=0), "algorithm.actor_replay_windows=0 must be an integer >= 1"),
        (lambda: ShacppConfig(reward_observation_noise=-0.1), "algorithm.reward_observation_noise=-0.1 must be a finite"),
        (lambda: ShacppConfig(reward_huber_delta=0.0), "algorithm.reward_huber_delta=0.0 must be"),
        (lambda: ShacpConfig(reward_slots=[4]), "algorithm.reward_slots=[4] must be [own_features, slot_features]"),
        (lambda: ShacppConfig(reward_slots=[4, 0]), "algorithm.reward_slots=[4, 0] must be [own_features, slot_fe"),
        (lambda: ShacConfig(critic_slots=[-1, 3], critic_centralised=False), "algorithm.critic_slots=[-1, 3] must be"),
        (lambda: ShacppConfig(critic_slots=[4, 3]), "but algorithm.critic_centralised=true asks for one over every"),
        (lambda: ShacpConfig(model_minibatch_size=0), "algorithm.model_minibatch_size=0 must be an integer >= 1"),
        (lambda: ShacpConfig(model_epochs=0), "algorithm.model_epochs=0 must be an integer >= 1"),
        (lambda: ShacppConfig(model_first_steps=[1000, 0]), "algorithm.model_first_steps[1]=0 must be an integer"),
        (lambda: ShacppConfig(model_first_steps=1000), "algorithm.model_first_steps=1000 must be a list of integers"),
        (lambda: ShacppConfig(model_surprise_steps=0), "algorithm.model_surprise_steps=0 must be an integer >= 1"),
        (lambda: ShacConfig(deterministic_clamped_mean=True, clamp_actions=False), "clamp_actions=false does not"),
        (lambda: ShacpConfig(model_surprise_ratio=-1.0), "algorithm.model_surprise_ratio=-1.0 must be a finite"),
        (lambda: ShacpConfig(model_lr=0.0), "algorithm.model_lr=0.0 must be a finite number > 0"),
        (lambda: ShacppConfig(world_hidden_size=0), "algorithm.world_hidden_size=0 must be an integer >= 1"),
        (lambda: ShacppConfig(world_model_steps=0), "algorithm.world_model_steps=0 must be an integer >= 1"),
        (lambda: ShacppConfig(world_num_heads=3), "algorithm.world_num_heads=3 must divide algorithm.world_hidden"),
        (lambda: ShacppConfig(world_cache_size=10, world_rollout="one_pass"), "algorithm.world_cache_size=10 cannot"),
        (lambda: ShacppConfig(world_checkpoint_chunks=-1), "algorithm.world_checkpoint_chunks=-1 must be an integer"),
        (lambda: ShacppConfig(world_rollout="dreamer"), "algorithm.world_rollout='dreamer' must be one of 'one_pass', 'spl"),
        (lambda: TransformerConfig(num_heads=3), "model.num_heads=3 must divide model.hidden_size=64"),
        (lambda: TransformerConfig(head_init_scale=0.0), "model.head_init_scale=0.0 must be a finite number > 0"),
        (lambda: SlotSetModelConfig(), "model.slots=None must be [own_features, slot_features]"),
        (lambda: SlotSetModelConfig(slots=[4, 0]), "model.slots=[4, 0] must be [own_features, slot_features]"),
        (lambda: SlotSetModelConfig(slots=[4, 3], num_cells=[0]), "model.num_cells[0]=0 must be an integer >= 1"),
    ],
)  # fmt: skip
def test_python_configs_refuse_impossible_values(config, message: str):
    with raises(ValueError, message):
        config()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["algorithm=shacpp", "algorithm.lmbda=1.5"], "algorithm.lmbda=1.5 must be a number in [0, 1]"),
        (["algorithm=shacpp", "algorithm.model_minibatch_size=0"], "algorithm.model_minibatch_size=0 must be"),
        (["algorithm=shacpp", "algorithm.world_rollout=splice"], "algorithm.world_rollout='splice' must be one of"),
        (["algorithm=shac", "model=layers/transformer", "model.num_heads=3"], "model.num_heads=3 must divide"),
        (["algorithm=mappo", "model=layers/slot_set"], "dispersion's is model.slots=[4,3]"),
    ],
)
def test_hydra_configs_refuse_what_python_refuses(overrides: list[str], message: str):
    """BenchMARL builds the configs from hydra's structured configs with ``OmegaConf.to_object``, which runs the
    dataclasses' checks: the command line refuses what Python refuses, before anything is built."""
    with initialize_config_module(config_module="benchmarl.conf", version_base=None):
        cfg = compose(config_name="config", overrides=[*overrides, "task=vmas/transport"])
    with raises(ValueError, message):
        load_algorithm_config_from_hydra(cfg.algorithm)
        load_model_config_from_hydra(cfg.model)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(gamma=1.5), "experiment.gamma=1.5 must be a number in [0, 1]"),
        (dict(lr=-1e-3), "experiment.lr=-0.001 must be a finite number > 0"),
        (dict(polyak_tau=2.0), "experiment.polyak_tau=2.0 must be a number in [0, 1]"),
        (dict(clip_grad_val=-1.0), "experiment.clip_grad_val=-1.0 must be a finite number > 0"),
        (dict(on_policy_collected_frames_per_batch=-64), "experiment.on_policy_collected_frames_per_batch=-64 must be"),
        (dict(on_policy_collected_frames_per_batch=0), "experiment.on_policy_collected_frames_per_batch=0 must be"),
        (dict(on_policy_n_envs_per_worker=0), "experiment.on_policy_n_envs_per_worker=0 must be an integer >= 1"),
        (dict(on_policy_minibatch_size=0), "experiment.on_policy_minibatch_size=0 must be an integer >= 1"),
    ],
)  # fmt: skip
def test_experiment_values_the_algorithms_use_are_checked_at_set_up(tmp_path: Path, settings: dict, message: str):
    with raises(ValueError, message):
        tiny_experiment(ShacConfig(), tmp_path, max_n_iters=1, collect_with_grad=True, evaluation=False, **settings)


def test_a_config_changed_after_it_was_made_is_checked_at_set_up(tmp_path: Path):
    config = ShacppConfig()
    config.model_minibatch_size = 0
    with raises(ValueError, "algorithm.model_minibatch_size=0"):
        tiny_experiment(config, tmp_path, max_n_iters=1)


@pytest.mark.parametrize(
    "config, message",
    [
        (ShacppConfig(reward_slots=[4, 4]), "observes 13 features, whose last 9 are not a whole number of slots"),
        (ShacppConfig(reward_slots=[4, 3], reward_centralised=True), "set reward_centralised=false if each agent's"),
        (ShacppConfig(critic_slots=[0, 2], critic_centralised=False), "algorithm.critic_slots=[0, 2] splits an"),
    ],
)  # fmt: skip
def test_slots_that_do_not_fit_the_task_are_refused_at_set_up(tmp_path: Path, config, message: str):
    """The paper's dispersion (3 foods) observes 4 own features and 3 slots of 3."""
    with raises(ValueError, message):
        tiny_experiment(config, tmp_path, task=PaperVmasTask.DISPERSION, max_n_iters=1)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["algorithm=shac", "experiment.gamma=1.5"], "experiment.gamma=1.5 must be a number in [0, 1]"),
        (["algorithm=shacpp", "algorithm.actor_max_grad_norm=-1"], "algorithm.actor_max_grad_norm=-1.0 must be"),
    ],
)
def test_command_line_misuse_fails_at_set_up_with_the_key(tmp_path: Path, overrides: list[str], message: str):
    result = benchmarl_run(tmp_path, *TINY, "task=vmas/transport", "experiment.max_n_iters=1", *overrides)
    assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]


def test_shac_warns_when_a_collection_keeps_the_simulator_graph_over_many_windows(tmp_path: Path):
    """BenchMARL's base experiment collects 600 steps per iteration: SHAC's graph then spans 19 windows."""
    with pytest.warns(UserWarning, match="keeps the simulator's autograd graph over each whole collection: 8 steps"):
        tiny_experiment(ShacConfig(window_length=4), tmp_path, max_n_iters=1, collect_with_grad=True)


# ---------------------------------------------------------------------------------------------------------------------
# The TorchRL classes


def actor_loss(**kwargs) -> SHACActorLoss:
    loss = SHACActorLoss(open_loop_actor(torch.zeros(8, 3, 2, 2)), quadratic_critic(0.5), action_bound_coef=0, **kwargs)
    loss.set_keys(**MULTI_AGENT_KEYS)
    return loss


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: actor_loss(gamma=-1.0), "gamma=-1.0 must be a number in [0, 1]"),
        (lambda: actor_loss(value_gradient=-0.5), "value_gradient=-0.5 must be a finite number >= 0"),
        (lambda: actor_loss(world_gradient=-0.5), "world_gradient=-0.5 must be a finite number >= 0"),
        (lambda: TDLambdaValueLoss(quadratic_critic(1.0), gamma=1.5), "gamma=1.5 must be a number in [0, 1]"),
        (lambda: TDLambdaValueLoss(quadratic_critic(1.0), lmbda=2), "lmbda=2 must be a number in [0, 1]"),
        (lambda: FiniteGradientStep(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))]), max_grad_norm=-1),
         "max_grad_norm=-1 must be a finite number > 0"),
        (lambda: AxisAttentionWorldModel(3, 2, horizon=0), "horizon=0 must be an integer >= 1"),
        (lambda: AxisAttentionWorldModel(3, 2, horizon=4, num_heads=3), "num_heads=3 must divide hidden_size=64"),
        (lambda: AgentSetTransformer(5, 3, hidden_size=0), "hidden_size=0 must be an integer >= 1"),
        (lambda: WindowUpdate({}, window_length=2.5), "window_length=2.5 must be an integer >= 1"),
        (lambda: WindowUpdate({}, actor_replay_steps=-1), "actor_replay_steps=-1 must be an integer >= 0"),
        (lambda: WindowUpdate({}, actor_replay_windows=0), "actor_replay_windows=0 must be an integer >= 1"),
        (lambda: WindowUpdate({}, likelihood_ratio_steps=-1), "likelihood_ratio_steps=-1 must be an integer >= 0"),
        (lambda: WindowUpdate({}, likelihood_ratio_minibatch_size=0),
         "likelihood_ratio_minibatch_size=0 must be an integer >= 1"),
        (lambda: WindowUpdate({}, likelihood_ratio_collections=0), "likelihood_ratio_collections=0 must be an integer"),
        (lambda: WindowUpdate({}, likelihood_ratio_collections=2), "likelihood_ratio_steps=0 takes none"),
        (lambda: CoolDown(every=0), "every=0 must be an integer >= 1"),
        (lambda: make_stratified_cache(10, 2, batch_size=0), "batch_size=0 must be an integer >= 1"),
    ],
)  # fmt: skip
def test_torchrl_classes_refuse_impossible_arguments(make, message: str):
    with raises(ValueError, message):
        make()


@pytest.mark.parametrize("window_length", [0, 2.5])
def test_window_collector_refuses_a_window_length_that_is_not_a_count(window_length):
    env = make_point_mass_env(torch.zeros(2, 1, 2), [0, 0], 10)
    with raises(ValueError, f"window_length={window_length!r} must be an integer >= 1"):
        WindowCollector(env, open_loop_actor(torch.zeros(4, 2, 1, 2)), window_length=window_length)


def test_world_model_refuses_no_agents():
    model = AxisAttentionWorldModel(3, 2, horizon=4)
    with raises(ValueError, "The world model got no agents"):
        model(torch.zeros(5, 0, 3), torch.zeros(5, 4, 0, 2))


@pytest.mark.parametrize(
    "cut", [lambda w: w.reshape(-1), lambda w: w[:, 0], lambda w: w[0, 0]], ids=["reshape(-1)", "[:, 0]", "0-d"]
)
def test_window_losses_refuse_what_is_not_a_window(cut):
    """A flattened batch or one step of each env would be read with the envs as time steps; a [B, T] window without
    names (BenchMARL's) and a single env's window named "time" are windows."""
    window, _, _, _ = point_mass_window()
    loss = actor_loss(gamma=0.9)
    value = TDLambdaValueLoss(quadratic_critic(0.5))
    value.set_keys(**MULTI_AGENT_KEYS)
    with raises(ValueError, "needs a window of transitions shaped [*envs, time]"):
        loss(cut(window))
    with raises(ValueError, "needs a window of transitions shaped [*envs, time]"):
        value.value_targets(cut(window.detach()))
    unnamed = window.detach().clone()
    unnamed.names = None
    torch.testing.assert_close(value.value_targets(unnamed), value.value_targets(window.detach()))
    torch.testing.assert_close(value.value_targets(window[0].detach()), value.value_targets(window.detach())[0])


# ---------------------------------------------------------------------------------------------------------------------
# Non-finite data: skipped, dropped, counted; the faulty envs reset; the run goes on


def test_vmas_env_is_reset_after_a_non_finite_step():
    """Env 1's agent diverges at the third step: that step is truncated, the env reset, and the following steps are
    finite; the other envs run on."""
    torch.manual_seed(0)
    env = make_vmas_env("transport", num_envs=3, n_agents=2, seed=0)
    with diverging_agent(Transport, at_call=2 + 2 * 2 + 1, num_envs=3):  # 2 calls at the rollout's reset, 2 a step
        rollout = env.rollout(6, break_when_any_done=False)
    finite = torch.isfinite(rollout["next", "agents", "observation"]).flatten(2).all(-1)
    assert finite.logical_not().nonzero().tolist() == [[1, 2]]
    assert rollout["next", "truncated"].squeeze(-1).nonzero().tolist() == [[1, 2]]
    assert torch.isfinite(rollout["agents", "observation"]).all()  # the step after starts from the reset
    assert env.transform[-1].resets == 1


def test_vmas_refuses_non_finite_actions_with_its_own_message():
    env = make_vmas_env("transport", num_envs=3, n_agents=2, seed=0)
    action = env.full_action_spec.zero()
    action["agents", "action"][2, 1, 0] = math.nan
    with raises(ValueError, "Non-finite actions under ('agents', 'action') for envs [2]"):
        env.step(env.reset().update(action))


def logged(experiment) -> dict[str, list[float]]:
    """Every value the experiment logs, by key, in order."""
    values: dict[str, list[float]] = {}
    log = experiment.logger.log

    def record(to_log, step):
        for key, value in to_log.items():
            values.setdefault(key, []).append(value)
        log(to_log, step)

    experiment.logger.log = record
    return values


def all_finite(experiment) -> bool:
    """Whether the policy, the critic and the learned models hold finite parameters only."""
    update = experiment.algorithm.update.state_dict()["groups"]["agents"]
    states = [experiment.losses["agents"].state_dict(), update["actor"]]
    states += [model["loss"] for model in update["models"].values()]
    return all(torch.isfinite(v).all() for state in states for v in state.values() if isinstance(v, torch.Tensor))


@pytest.mark.parametrize("algorithm", ["shac", "shacpp"])
def test_a_diverged_simulation_is_survived(tmp_path: Path, algorithm: str):
    """NaN positions in VMAS at the last step of the first collection: its actor step (SHAC) or its items (SHAC++) are
    dropped and counted, the env is reset, and the run goes on with finite parameters."""
    config = ShacConfig() if algorithm == "shac" else ShacppConfig(model_train_every=2, model_epochs=1, cache_size=200)
    with diverging_agent(Transport, at_call=4 + 2 * 7 + 2, num_envs=8):  # 2 calls at VMAS's init, 2 at the reset
        experiment = tiny_experiment(
            config, tmp_path, max_n_iters=3, evaluation=False, collect_with_grad=algorithm == "shac"
        )
        values = logged(experiment)
        experiment.run()
    assert experiment.n_iters_performed == 3 and all_finite(experiment)
    assert values["train/non_finite_envs"] == [1, 0, 0]  # reset: the later collections are finite
    assert values["train/agents/dropped_critic_items"] == [8] * 3  # env 1's λ-targets chain to its last step
    if algorithm == "shac":
        assert values["train/agents/skipped_actor_steps"] == [1] * 3
    else:
        assert values["train/agents/dropped_world_items"] == [1] * 3  # env 1's window
        assert values["train/agents/dropped_reward_items"] == [1] * 3  # the transition into the NaN observation


def test_non_finite_values_in_a_collected_shacpp_window_never_reach_a_cache(tmp_path: Path):
    """NaN, then an infinity, in one observation of two collections: those windows' actor steps are skipped, their
    items dropped before the caches (which train finite models on the cool-down) and the actor's replay (whose steps
    are never skipped), and the run goes on."""
    config = ShacppConfig(model_train_every=2, model_epochs=1, cache_size=200, critic_from_cache=True)
    experiment = tiny_experiment(config, tmp_path, max_n_iters=4, evaluation=False, callbacks=[CorruptBatch((1, 2))])
    values = logged(experiment)
    experiment.run()
    assert experiment.n_iters_performed == 4 and all_finite(experiment)
    assert values["train/agents/skipped_actor_steps"] == [0, 1, 2, 2]
    assert values["train/non_finite_envs"] == [0, 1, 1, 0]
    for model in ("world", "reward", "value_cache", "critic"):
        assert values[f"train/agents/dropped_{model}_items"] == [0, 1, 2, 2], model
    assert all(math.isfinite(loss) for loss in values["train/agents/loss_world"] + values["train/agents/loss_reward"])


# ---------------------------------------------------------------------------------------------------------------------
# Restoring checkpoints


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A one-iteration checkpoint of SHAC and of MAPPO (2 agents), and a file that is not a checkpoint."""
    root = tmp_path_factory.mktemp("checkpoints")
    for name, config in (("shac", ShacConfig()), ("mappo", MappoConfig.get_from_yaml())):
        tiny_experiment(
            config, root / name, max_n_iters=1, evaluation=False, checkpoint_at_end=True,
            collect_with_grad=name == "shac",
        ).run()  # fmt: skip
    paths = {name: next((root / name).rglob("checkpoint_*.pt")) for name in ("shac", "mappo")}
    paths["garbage"] = root / "garbage.pt"
    paths["garbage"].write_text("not a checkpoint")
    return paths


@pytest.mark.parametrize(
    "config, checkpoint, n_agents, message",
    [
        (ShacConfig(), "mappo", 2, "was not written by shac, shacp or shacpp (it has no 'torchrl_shacpp' entry"),
        (ShacppConfig(), "shac", 2, "was written by shac, not shacpp: resume it with algorithm=shac"),
        (ShacConfig(), "garbage", 2, "garbage.pt is not a torch checkpoint"),
        (ShacConfig(), "shac", 3, "does not fit this experiment: agents critic value_network_params"),
    ],
)  # fmt: skip
def test_restore_checks_the_checkpoint_before_loading_it(tmp_path, checkpoints, config, checkpoint, n_agents, message):
    with raises(ValueError, message):
        tiny_experiment(
            config, tmp_path, max_n_iters=2, restore_file=str(checkpoints[checkpoint]), n_agents=n_agents,
            collect_with_grad=not isinstance(config, ShacppConfig),
        )  # fmt: skip


def test_a_shac_family_checkpoint_is_refused_for_another_algorithm(checkpoints):
    """``torchrl_shacpp.benchmarl.run`` checks it before BenchMARL's own algorithms load it."""
    with raises(ValueError, "was written by shac, not mappo: resume it with algorithm=shac"):
        check_checkpoint_algorithm(str(checkpoints["shac"]), "mappo", STATE_KEY)
    assert check_checkpoint_algorithm(str(checkpoints["mappo"]), "mappo", STATE_KEY)


# ---------------------------------------------------------------------------------------------------------------------
# Output folders, the results, early stopping, warnings


def test_save_folder_that_does_not_exist_is_refused_by_our_runner(tmp_path: Path):
    with raises(ValueError, f"experiment.save_folder={tmp_path / 'typo'} is not an existing folder: create it"):
        check_save_folder(str(tmp_path / "typo"))
    result = benchmarl_run(
        tmp_path, *TINY, "algorithm=shacpp", "task=vmas/transport", f"experiment.save_folder={tmp_path / 'typo'}",
        module="torchrl_shacpp.benchmarl.run",
    )  # fmt: skip
    assert result.returncode != 0 and "is not an existing folder" in result.stderr, result.stderr[-2000:]


def test_a_differentiable_scenario_setting_on_the_vmas_task_names_the_differentiable_task(tmp_path: Path):
    """``+task.approach_coef=0`` belongs to ``vmas/transport_differentiable``; on ``vmas/transport`` BenchMARL's own
    loader fails with its dataclass's ``TypeError``, our runner says where the setting goes."""
    overrides = ["algorithm=shac", "+task.approach_coef=0"]
    with initialize_config_module(config_module="benchmarl.conf", version_base=None):
        on_vmas = compose(config_name="config", overrides=[*overrides, "task=vmas/transport"])
        on_ours = compose(config_name="config", overrides=[*overrides, "task=vmas/transport_differentiable"])
    with raises(ValueError, "task=vmas/transport has no setting approach_coef: BenchMARL checks it against VMAS's"):
        check_task_keys(on_vmas.task, "vmas/transport")
    with raises(ValueError, "any other setting of vmas/transport is one of max_steps, n_agents, n_packages,"):
        check_task_keys({"n_agent": 3}, "vmas/transport")  # a typo is told VMAS's settings too
    with pytest.raises(TypeError, match="approach_coef"):
        load_task_config_from_hydra(on_vmas.task, "vmas/transport")
    check_task_keys(on_ours.task, "vmas/transport_differentiable")
    task = load_task_config_from_hydra(on_ours.task, "vmas/transport_differentiable")
    assert task.get_env_fun(2, True, 0, "cpu")()._env.scenario.approach_coef == 0.0
    check_task_keys({"approach_coef": 0}, "vmas/balance")  # no differentiable variant: BenchMARL's to check
    result = benchmarl_run(tmp_path, *TINY, *overrides, "task=vmas/transport", module="torchrl_shacpp.benchmarl.run")
    assert result.returncode != 0 and "task=vmas/transport_differentiable +task.approach_coef=" in result.stderr


@pytest.mark.parametrize(
    "files, message",
    [
        ({}, "missing not found"),
        ({"run/config.pkl": ""}, "BenchMARL writes them at each evaluation, so run with experiment.create_json=true"),
        ({"run/config.pkl": "", "run/run.json": '{"vmas": {"transport"'}, "run.json is not valid JSON"),
        ({"run/config.pkl": "", "run/run.json": "[1, 2]"}, "run.json is not a marl-eval file of BenchMARL"),
    ],
)  # fmt: skip
def test_results_name_the_cause_and_the_file(tmp_path: Path, files: dict[str, str], message: str):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    with pytest.raises(SystemExit, match=re.escape(message)):
        load_runs(tmp_path / ("missing" if not files else ""))


@pytest.mark.parametrize("settings", [dict(loggers=[], create_json=False), dict(evaluation=False, create_json=True)])
def test_early_stopping_refuses_a_run_that_never_evaluates(tmp_path: Path, settings: dict):
    with raises(ValueError, "EarlyStopping decides after each evaluation, and BenchMARL evaluates only with"):
        tiny_experiment(
            MappoConfig.get_from_yaml(), tmp_path, callbacks=[EarlyStopping(max_episode_reward=1.0)], max_n_iters=1,
            **settings,
        )  # fmt: skip


def test_no_target_network_warning_when_benchmarl_updates_the_target(tmp_path: Path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny_experiment(ShacConfig(), tmp_path, max_n_iters=1, collect_with_grad=True, evaluation=False).run()
    assert not [w for w in caught if "No target network updater" in str(w.message)]
