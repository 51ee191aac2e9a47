"""Set-up checks of the SHAC family's BenchMARL configurations and checkpoints.

Every value is checked before anything is built, with one message per problem that names the config key as the
command line spells it (``algorithm.lmbda``, ``experiment.gamma``), the bad value and what to use instead:

* :func:`check_algorithm_config`: the ``algorithm.*`` values, from the config dataclasses' ``__post_init__`` (so
  hydra's ``algorithm=shacpp algorithm.lmbda=...`` and ``ShacppConfig(lmbda=...)`` are refused alike);
* :func:`check_experiment`: at the algorithm's set-up, the ``algorithm.*`` values again (a config changed after it
  was made), the ``experiment.*`` values the algorithms depend on (:func:`check_experiment_config`), the task's
  info entry ``algorithm.critic_reward`` names, and that ``algorithm.reward_slots`` / ``critic_slots`` split the
  group's observation into whole slots;
* :func:`check_transformer_config`: ``model=layers/transformer`` sizes;
* :func:`check_restore_file`: that ``experiment.restore_file`` was written by the same algorithm, agent groups and
  network shapes, before BenchMARL loads it;
* :func:`check_task_keys`: that a differentiable scenario's own setting is not given to the VMAS task BenchMARL
  type-checks.
"""

from __future__ import annotations

import functools
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from benchmarl.experiment import Experiment, ExperimentConfig

from torchrl_shacpp.checks import (
    check_choice,
    check_count,
    check_counts,
    check_divides,
    check_fraction,
    check_non_negative,
    check_positive,
)
from torchrl_shacpp.benchmarl.envs import is_vmas, world_periodic_features
from torchrl_shacpp.benchmarl.tasks import DifferentiableVmasTask
from torchrl_shacpp.modules import WORLD_ROLLOUTS, PeriodicFeatures, check_detached_features
from torchrl_shacpp.modules.slots import holds_whole_slots, is_slot_layout

if TYPE_CHECKING:
    from benchmarl.environments import TaskClass

    from torchrl_shacpp.benchmarl.algorithms import Shac, ShacConfig

#: ``algorithm.<key>``: its check and what the value is (with the paper's). A config without the key skips it.
ALGORITHM_RULES: dict[str, tuple[Callable[..., None], str]] = {
    "lmbda": (check_fraction, "It is the TD(λ) parameter (paper: 0.95)."),
    "action_std": (check_positive, "It is the policy's standard deviation (paper: 1)."),
    "action_std_final": (check_positive, "It is the policy's last standard deviation, or null for a fixed one."),
    "lr_final": (check_positive, "It is the rate lr_schedule=linear ends at, or null for SHAC's 1e-5."),
    "action_bound_coef": (check_non_negative, "It weighs the action-bound penalty (paper: 1; 0 disables it)."),
    "action_mean_coef": (check_non_negative, "It weighs the control cost on the policy mean (0 disables it)."),
    "action_mean_coef_final": (
        check_non_negative, "It is the control cost's last coefficient, or null for a fixed one."
    ),
    "action_mean_gate": (check_non_negative, "It bounds |h| / ḡ where the control cost applies (0: everywhere)."),
    "actor_lr": (check_positive, "It is the actor's Adam learning rate (paper: 1e-3)."),
    "critic_lr": (check_positive, "It is the critic's Adam learning rate (paper: 1e-3), or null for experiment.lr."),
    "actor_max_grad_norm": (check_positive, "It clips the actor's gradient norm (paper: 1)."),
    "actor_skip_grad_norm": (
        check_positive, "Actor steps whose gradient norm is above it are skipped, or null to skip non-finite ones only."
    ),
    "actor_max_mean_change": (
        check_positive, "It bounds the RMS change of the policy's mean per actor step, or null for no bound."
    ),
    "actor_value_gradient": (
        check_non_negative,
        "It weighs the critic's gradient in the actor's (paper: 1; 0: none; above 1 it amplifies it).",
    ),
    "actor_likelihood_ratio": (
        check_non_negative, "It weighs the likelihood-ratio estimate of the actor's gradient (paper: 0, none)."
    ),
    "actor_likelihood_ratio_steps": (
        functools.partial(check_count, minimum=0), "It is PPO's minibatch steps of the actor per collection (paper: 0)."
    ),
    "actor_likelihood_ratio_lr": (check_positive, "It is the Adam learning rate of PPO's steps of the actor."),
    "actor_likelihood_ratio_collections": (
        check_count, "It is the last collections PPO's steps draw their minibatches from (1: this one)."
    ),
    "window_length": (check_count, "It is the actor's window in steps (paper: 32), or null for the whole collection."),
    "cache_size": (check_count, "It is the number of items in each model cache (paper: 30000)."),
    "reward_bins": (check_count, "It is the number of score bins of the reward cache (paper: 9)."),
    "reward_uniform_share": (check_fraction, "It is the share of the reward cache outside its bins (paper: 0)."),
    "actor_replay_steps": (
        functools.partial(check_count, minimum=0), "It is SHAC++'s replayed actor steps per window (paper: 0)."
    ),
    "actor_replay_windows": (check_count, "It is the number of last windows SHAC++'s replayed steps draw from."),
    "actor_grad_outlier_ratio": (
        check_positive, "It bounds each agent-step's action gradient by a multiple of the median one, or null for none."
    ),
    "actor_world_gradient": (
        check_non_negative,
        "It weighs the world model's gradient in the actor's (paper: 1; above 1 it amplifies the model's Jacobian).",
    ),
    "world_gradient_growth": (
        check_positive, "It bounds the state gradient's growth per step back through the world model, or null for none."
    ),
    "world_trusted_error_ratio": (
        check_positive, "It is a multiple of the window's median one-step error, or null to keep every agent-step."
    ),
    "reward_observation_noise": (
        check_non_negative, "It is the std of the noise on the reward model's training observations (paper: 0)."
    ),
    "reward_huber_delta": (
        check_positive, "It is where the reward model's Huber loss turns linear, or null for the squared error."
    ),
    "model_train_every": (check_count, "The models train after every this many windows (paper: 10)."),
    "model_epochs": (check_count, "It is the number of passes over each cache per training (paper: 10)."),
    "model_steps": (check_count, "It is the minibatches per model per training, or null for model_epochs passes."),
    "model_first_steps": (
        check_counts, "It lists the minibatches per model of the first trainings, one each, before model_steps."
    ),
    "model_surprise_steps": (check_count, "It is the minibatches of a surprised model's training, or null."),
    "model_surprise_ratio": (check_positive, "It is the new data's loss over the last training's that calls for them."),
    "model_minibatch_size": (check_count, "It is the learned models' minibatch size (paper: 1000)."),
    "model_lr": (check_positive, "It is the learned models' Adam learning rate (paper: 1e-3)."),
    "world_cache_size": (check_count, "It is the number of windows in the world cache, or null for the default."),
    "world_model_steps": (check_count, "It is the spliced world model's minibatches per training, or null."),
    "world_minibatch_size": (check_count, "It is the world model's minibatch size, or null for model_minibatch_size."),
    "world_model_first_epochs": (
        check_counts, "It lists the one-pass world model's passes in its first trainings, before model_epochs."
    ),
    "world_model_max_steps": (check_count, "It bounds the one-pass world model's minibatches per training, or null."),
    "world_bins": (check_count, "It is the number of return bins of the world cache (paper: 25)."),
    "value_bins": (check_count, "It is the number of λ-target bins of the critic's cache (paper: 9)."),
    "world_num_layers": (check_count, "It is the world model's number of layers (paper: 3)."),
    "world_hidden_size": (check_count, "It is the world model's hidden size (paper: 64)."),
    "world_feedforward_size": (check_count, "It is the world model's feed-forward size (paper: 128)."),
    "world_num_heads": (check_count, "It is the world model's number of attention heads (paper: 1)."),
    "world_checkpoint_chunks": (
        functools.partial(check_count, minimum=0),
        "0 keeps every activation; k >= 1 recomputes the world model's layers in k batch slices.",
    ),
}
#: ``experiment.on_policy_<key>``: what the count is (with the paper's).
EXPERIMENT_COUNTS = {
    "collected_frames_per_batch": "It is the env steps of a collection, envs x steps (paper: 512 x 32 = 16384).",
    "n_envs_per_worker": "It is the number of parallel envs (paper: 512).",
    "minibatch_size": "It is the critic's minibatch size in BenchMARL's optimiser loop.",
    "n_minibatch_iters": "It is the number of passes of BenchMARL's optimiser loop over each collection.",
}
#: ``algorithm.lr_schedule``'s choices.
LR_SCHEDULES = ("constant", "linear")
#: The keys that may be null.
OPTIONAL_KEYS = (
    "window_length", "world_cache_size", "world_minibatch_size", "critic_lr", "model_steps", "world_model_steps",
    "world_model_max_steps", "reward_huber_delta", "model_surprise_steps", "action_std_final", "action_mean_coef_final",
    "lr_final", "actor_max_mean_change", "actor_skip_grad_norm", "actor_grad_outlier_ratio", "world_gradient_growth",
    "world_trusted_error_ratio",
)
#: SHAC++'s options that act on the spliced world model, with what each does to it.
SPLICED_OPTIONS = {
    "world_gradient_growth": "bounds the spliced world model's chain of Jacobians",
    "world_detached_features": "cuts features from the spliced world model's Jacobians",
    "world_trusted_error_ratio": "cuts badly predicted agent-steps from the spliced world model's chain of Jacobians",
}
#: The algorithms whose checkpoints hold this package's entry.
SHAC_FAMILY = ("shac", "shacp", "shacpp")
#: Where the sizes of ``model=layers/transformer`` are also set.
_CRITIC_MODEL_KEYS = "(The same keys under critic_model size the critic's transformer.)"


def check_algorithm_config(config: ShacConfig) -> None:
    """Refuses ``algorithm.*`` values no run can use (ranges, sizes, caches that cannot hold their bins)."""
    for key, (check, hint) in ALGORITHM_RULES.items():
        if hasattr(config, key) and not (key in OPTIONAL_KEYS and getattr(config, key) is None):
            check(f"algorithm.{key}", getattr(config, key), hint=hint)
    if hasattr(config, "world_num_heads"):
        check_divides(
            "algorithm.world_num_heads", config.world_num_heads, "algorithm.world_hidden_size",
            config.world_hidden_size, "Each head takes world_hidden_size / world_num_heads features.",
        )  # fmt: skip
    check_choice(
        "algorithm.lr_schedule", config.lr_schedule, LR_SCHEDULES, "constant is the paper's; linear is SHAC's decay "
        "of the actor's and the critic's rates to lr_final (SHAC's: 1e-5) over the experiment's iterations.",
    )  # fmt: skip
    if config.lr_final is not None and config.lr_schedule != "linear":
        raise ValueError(
            f"algorithm.lr_final={config.lr_final} is where lr_schedule=linear ends, but algorithm.lr_schedule="
            f"{config.lr_schedule!r} keeps the rates: set lr_schedule=linear, or lr_final=null."
        )
    if config.learn_std and config.action_std_final is not None:
        raise ValueError(
            f"algorithm.action_std_final={config.action_std_final} schedules a fixed σ, but algorithm.learn_std=true "
            "learns it: set action_std_final=null, or learn_std=false."
        )
    if config.action_mean_relative and not config.action_mean_coef:
        raise ValueError(
            "algorithm.action_mean_relative=true scales the control cost, which algorithm.action_mean_coef=0 turns "
            "off: set action_mean_coef > 0 (e.g. 1), or action_mean_relative=false."
        )
    if config.action_mean_coef_final is not None and not config.action_mean_coef:
        raise ValueError(
            f"algorithm.action_mean_coef_final={config.action_mean_coef_final} is where the control cost's "
            "coefficient falls to, but algorithm.action_mean_coef=0 turns the cost off: set action_mean_coef > 0 "
            "(e.g. 1), or action_mean_coef_final=null."
        )
    if config.action_mean_gate and not config.action_mean_relative:
        raise ValueError(
            f"algorithm.action_mean_gate={config.action_mean_gate} compares the return's gradient with its running "
            "mean, which only algorithm.action_mean_relative=true keeps: set action_mean_relative=true, or "
            "action_mean_gate=0."
        )
    if config.actor_likelihood_ratio_collections > 1 and not config.actor_likelihood_ratio_steps:
        raise ValueError(
            f"algorithm.actor_likelihood_ratio_collections={config.actor_likelihood_ratio_collections} keeps "
            "collections for PPO's steps, and algorithm.actor_likelihood_ratio_steps=0 takes none: set "
            "actor_likelihood_ratio_steps (e.g. 8), or actor_likelihood_ratio_collections=1."
        )
    if config.deterministic_clamped_mean and not config.clamp_actions:
        raise ValueError(
            "algorithm.deterministic_clamped_mean=true makes the deterministic action the mean of the clamped action, "
            "but algorithm.clamp_actions=false does not clamp: set clamp_actions=true, or deterministic_clamped_mean="
            "false."
        )
    for key in ("reward_slots", "critic_slots"):
        if getattr(config, key, None) is not None:
            check_slot_layout_setting(
                f"algorithm.{key}", getattr(config, key), f" Or {key}=null for the network on the whole observation."
            )
    if getattr(config, "critic_slots", None) is not None and config.critic_centralised:
        raise ValueError(
            f"algorithm.critic_slots={list(config.critic_slots)} gives each agent a value from its own observation's "
            "slots, but algorithm.critic_centralised=true asks for one over every agent's: set critic_centralised="
            "false, or critic_slots=null."
        )
    if hasattr(config, "world_rollout"):
        check_choice(
            "algorithm.world_rollout", config.world_rollout, WORLD_ROLLOUTS, "one_pass is the paper's world model "
            "(the window from its first observation); spliced chains a one-step model's Jacobians along the rollout.",
        )  # fmt: skip
    check_detached_features("algorithm.world_detached_features", getattr(config, "world_detached_features", None))
    for name, effect in SPLICED_OPTIONS.items():
        value = getattr(config, name, None)
        if value is not None and config.world_rollout != "spliced":
            raise ValueError(
                f"algorithm.{name}={value} {effect}; algorithm.world_rollout={config.world_rollout!r} has none: set "
                f"world_rollout=spliced, or {name}=null."
            )
    periodic_features = getattr(config, "world_periodic_features", None)
    if periodic_features is not None:
        try:
            PeriodicFeatures(periodic_features)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"algorithm.world_periodic_features={periodic_features}: {error} Give [[index, period], ...], e.g. "
                "[[15,3.141592653589793]] for the line's rotation on VMAS's balance, or null."
            ) from None
        if periodic_features and config.world_rollout != "spliced":
            raise ValueError(
                f"algorithm.world_periodic_features={periodic_features} are read and learned by the spliced world "
                f"model's transition; algorithm.world_rollout={config.world_rollout!r} has none: set "
                "world_rollout=spliced, or world_periodic_features=null."
            )
    if getattr(config, "world_model_first_epochs", None) and config.world_rollout != "one_pass":
        raise ValueError(
            f"algorithm.world_model_first_epochs={list(config.world_model_first_epochs)} gives passes to the one-pass "
            f"world model's first trainings; algorithm.world_rollout={config.world_rollout!r} trains on "
            "world_model_steps minibatches: set world_rollout=one_pass, or world_model_first_epochs=[]."
        )
    max_steps = getattr(config, "world_model_max_steps", None)
    if max_steps is not None and config.world_rollout != "one_pass":
        raise ValueError(
            f"algorithm.world_model_max_steps={max_steps} bounds the one-pass world model's trainings; "
            f"algorithm.world_rollout={config.world_rollout!r} trains on world_model_steps minibatches: set "
            "world_rollout=one_pass, or world_model_max_steps=null."
        )
    caches = [("reward_bins", "cache_size")]
    if getattr(config, "critic_from_cache", False):
        caches.append(("value_bins", "cache_size"))
    if getattr(config, "world_cache_size", None) is not None and getattr(config, "world_rollout", "") == "one_pass":
        caches.append(("world_bins", "world_cache_size"))
    if getattr(config, "reward_uniform_share", 0) > 0:
        uniform_slots = int(config.reward_uniform_share * config.cache_size)
        if not 1 <= uniform_slots <= config.cache_size - config.reward_bins:
            raise ValueError(
                f"algorithm.reward_uniform_share={config.reward_uniform_share} of algorithm.cache_size="
                f"{config.cache_size} leaves {uniform_slots} slots for random replacement and "
                f"{config.cache_size - uniform_slots} for {config.reward_bins} bins (algorithm.reward_bins): each "
                "needs at least one slot; use a share below 1 (0.5: half of each minibatch as the data comes)."
            )
    for bins, size in caches:
        if hasattr(config, size) and getattr(config, size) < getattr(config, bins):
            raise ValueError(
                f"algorithm.{size}={getattr(config, size)} cannot hold {getattr(config, bins)} bins "
                f"(algorithm.{bins}): raise it to at least {getattr(config, bins)}, or use fewer bins."
            )


def check_experiment_config(config: ExperimentConfig, *, algorithm: str, uses_target_critic: bool) -> None:
    """Refuses ``experiment.*`` values the SHAC family cannot train with: the discount, the critic's optimiser and
    clipping, the Polyak weight of a target critic, and the collection and minibatch sizes."""
    check_fraction("experiment.gamma", config.gamma, "It is the discount of the rewards (paper: 0.99).")
    check_positive("experiment.lr", config.lr, f"It is the critic's Adam learning rate in {algorithm} (paper: 1e-3).")
    check_non_negative("experiment.adam_eps", config.adam_eps, "It is Adam's epsilon (BenchMARL: 1e-6).")
    if config.clip_grad_val is not None:
        check_positive(
            "experiment.clip_grad_val", config.clip_grad_val, "It clips the critic's gradients; null turns it off."
        )
    if uses_target_critic:
        check_fraction(
            "experiment.polyak_tau", config.polyak_tau, "It is the target critic's Polyak weight (BenchMARL: 0.005)."
        )
    for key, hint in EXPERIMENT_COUNTS.items():
        check_count(f"experiment.on_policy_{key}", getattr(config, f"on_policy_{key}"), hint=hint)


def check_experiment(algorithm: Shac) -> None:
    """The set-up checks of an algorithm of the SHAC family: its config, the experiment values it depends on, a
    warning when SHAC or SHAC+ would keep the simulator's graph over more than one window, and one when SHAC++ is
    set up on a task whose observation its world model is known not to fit (:data:`WORLD_MODEL_TRAPS`) without the
    periodic features that fix it, and that the
    task's info has the entry ``algorithm.critic_reward`` names, and that the slot layouts fit the observation."""
    name = type(algorithm).__name__.lower()
    algorithm_config, config = algorithm.experiment.algorithm_config, algorithm.experiment_config
    check_algorithm_config(algorithm_config)
    check_experiment_config(config, algorithm=name, uses_target_critic=algorithm.use_target_critic)
    frames, envs = config.on_policy_collected_frames_per_batch, config.on_policy_n_envs_per_worker
    if algorithm.simulator_graph and frames % envs == 0:
        _warn_long_simulator_graph(
            name, collection_length=frames // envs, window_length=algorithm_config.window_length, envs=envs
        )
    task = algorithm.experiment.task
    periodic = world_periodic_features(
        task, getattr(algorithm_config, "world_rollout", ""), getattr(algorithm_config, "world_periodic_features", None)
    )
    if not algorithm.simulator_graph and not periodic:
        _warn_world_model_trap(name, task)
    if algorithm_config.critic_reward is not None:
        _check_critic_reward(algorithm_config.critic_reward, algorithm.experiment)
    _check_slots_fit(algorithm)


def _check_critic_reward(entry: str, experiment: Experiment) -> None:
    """Refuses ``algorithm.critic_reward`` when a group's info has no such entry, naming the entries it has."""
    info_spec = experiment.info_spec
    for group in experiment.group_map:
        has_info = info_spec is not None and (group, "info") in info_spec.keys(True)
        entries = list(info_spec[group, "info"].keys()) if has_info else []
        if entry not in entries:
            raise ValueError(
                f"algorithm.critic_reward={entry!r} names an entry of the info of group {group!r}, which task "
                f"{experiment.task.name.lower()} does not have (its info: {sorted(entries) or 'none'}). Name one of "
                "them, e.g. task_reward with task=vmas/transport_differentiable +task.approach_reward=true, or "
                "critic_reward=null for the reward."
            )


def check_slot_layout_setting(setting: str, slots: Any, alternative: str = "") -> None:
    """Refuses a ``setting`` (``model.slots``, ``algorithm.reward_slots``, ...) that is not ``[own_features >= 0,
    slot_features >= 1]``; ``alternative`` ends the message with what else the user may set."""
    if slots is None or len(slots) != 2 or not is_slot_layout(*slots):
        raise ValueError(
            f"{setting}={None if slots is None else list(slots)} must be [own_features, slot_features]: the agent's "
            "own features at the start of its observation (at least 0), then the features of each entity slot (at "
            f"least 1); dispersion's is {setting}=[4,3].{alternative}"
        )


def _check_slots_fit(algorithm: Shac) -> None:
    """Refuses ``algorithm.reward_slots`` / ``critic_slots`` on a group whose observation they do not split into whole
    slots, and ``reward_slots`` where the group's reward model pools the agents' transitions."""
    config = algorithm.experiment.algorithm_config
    for key in ("reward_slots", "critic_slots"):
        if getattr(config, key, None) is None:
            continue
        own, slot = getattr(config, key)
        for group in algorithm.group_map:
            features = algorithm.observation_spec[group, "observation"].shape[-1]
            if not holds_whole_slots(features, own, slot):
                raise ValueError(
                    f"algorithm.{key}=[{own}, {slot}] splits an observation into {own} own features and slots of "
                    f"{slot}, but group {group!r} observes {features} features, whose last {features - own} are not "
                    f"a whole number of slots: give the task's layout (dispersion: [4, 3]), or {key}=null."
                )
            if key == "reward_slots" and algorithm.reward_is_centralised(group):
                raise ValueError(
                    "algorithm.reward_slots sums each agent's reward over its own observation's slots, but group "
                    f"{group!r}'s reward model reads every agent's transition (the task's rewards are the team's, or "
                    "algorithm.reward_centralised=true): set reward_centralised=false if each agent's reward is its "
                    "own, or reward_slots=null."
                )


def _warn_long_simulator_graph(algorithm: str, *, collection_length: int, window_length: int | None, envs: int) -> None:
    """Warns when a collection keeps the simulator's graph over more steps than one window (e.g. BenchMARL's base
    experiment: 600 steps), which costs memory and time in proportion."""
    if window_length is None or collection_length <= window_length:
        return
    warnings.warn(
        f"{algorithm} keeps the simulator's autograd graph over each whole collection: {collection_length} steps on "
        f"{envs} envs (experiment.on_policy_collected_frames_per_batch / experiment.on_policy_n_envs_per_worker), cut "
        f"into windows of algorithm.window_length={window_length}; memory and time per collection grow with its "
        "length. The paper collects one window per iteration: experiment=shacpp_cpu or experiment=shacpp_paper, or "
        "on_policy_collected_frames_per_batch = on_policy_n_envs_per_worker x window_length.",
        stacklevel=2,
    )


#: VMAS tasks whose observation a learned world model cannot fit unless it reads their angle features as angles
#: (the spliced model's ``world_periodic_features``, the task's by default): this package's task that observes the
#: same information without the trap, and why (``benchmarks/results/transition_model_fit.md``).
WORLD_MODEL_TRAPS: dict[str, tuple[str, str]] = {
    "balance": (
        "balance_centred",
        "VMAS observes the line's rotation modulo pi in [0, pi), so the feature jumps by pi whenever the line tilts "
        "across level; a world model that does not read it as an angle cannot fit the jumps, and its Jacobians "
        "chained over a window blow up (the spliced model reads it as one by default: "
        "algorithm.world_periodic_features=null with algorithm.world_rollout=spliced)",
    ),
}


def _warn_world_model_trap(algorithm: str, task: TaskClass) -> None:
    """Warns when an algorithm that learns a world model is set up on a task of :data:`WORLD_MODEL_TRAPS`."""
    name = task.name.lower()
    if not is_vmas(task) or name not in WORLD_MODEL_TRAPS:
        return
    alternative, why = WORLD_MODEL_TRAPS[name]
    warnings.warn(
        f"{algorithm} on vmas/{name}: {why}. task=vmas/{alternative} observes the same information without the "
        "jumps, with the same rewards, for every algorithm (run the baselines on it too).",
        stacklevel=2,
    )


def check_transformer_config(config: Any) -> None:
    """Refuses ``model=layers/transformer`` sizes the agent-set transformer cannot have."""
    for key in ("num_layers", "num_heads", "hidden_size", "feedforward_size"):
        check_count(f"model.{key}", getattr(config, key), hint=_CRITIC_MODEL_KEYS)
    check_divides(
        "model.num_heads", config.num_heads, "model.hidden_size", config.hidden_size,
        f"Each head takes hidden_size / num_heads features. {_CRITIC_MODEL_KEYS}",
    )  # fmt: skip
    check_fraction("model.dropout", config.dropout, _CRITIC_MODEL_KEYS)
    check_positive("model.head_init_scale", config.head_init_scale, _CRITIC_MODEL_KEYS)


def check_slot_set_config(config: Any) -> None:
    """Refuses ``model=layers/slot_set`` without a slot layout, or with sizes the network cannot have."""
    check_slot_layout_setting("model.slots", config.slots)
    check_count("model.hidden_size", config.hidden_size)
    check_counts("model.num_cells", config.num_cells)


def check_save_folder(save_folder: str | None) -> None:
    """Refuses an ``experiment.save_folder`` that does not exist. BenchMARL creates each run's folder inside it, but not
    it, and fails with the run folder's path; a typo is better told than silently created."""
    if save_folder is not None and not Path(save_folder).is_dir():
        raise ValueError(
            f"experiment.save_folder={save_folder} is not an existing folder: create it (mkdir -p {save_folder}), or "
            "leave it null to save in hydra's output folder."
        )


def check_task_keys(task_config: Mapping[str, Any], task_name: str) -> None:
    """Refuses ``task=vmas/<name> +task.<key>=...`` where ``<key>`` is a setting of this package's differentiable
    scenario only (transport's ``approach_coef``, sampling's ``lookahead_coef``): BenchMARL checks ``vmas/<name>``'s
    config against VMAS's own settings and fails with a ``TypeError`` that does not say where the key belongs."""
    environment, _, name = task_name.partition("/")
    if environment != "vmas" or name.upper() not in DifferentiableVmasTask.__members__:
        return
    known = DifferentiableVmasTask[name.upper()].get_from_yaml().config
    unknown = sorted(set(task_config) - set(known))
    if unknown:
        differentiable = f"{task_name}_differentiable"
        raise ValueError(
            f"task={task_name} has no setting {', '.join(unknown)}: BenchMARL checks it against VMAS's scenario. "
            f"Settings of this package's differentiable scenario go on task={differentiable} (the same task and "
            f"settings, results filed under {name}): task={differentiable} +task.{unknown[0]}=...; any other "
            f"setting of {task_name} is one of {', '.join(sorted(known))}."
        )


def read_checkpoint(path: str) -> Mapping[str, Any]:
    """The checkpoint at ``path`` as BenchMARL would load it (memory-mapped: BenchMARL loads it again), or an error
    that names the file."""
    fix = "Pass a checkpoints/checkpoint_<frames>.pt file of a BenchMARL run."
    if not Path(path).is_file():
        raise FileNotFoundError(f"experiment.restore_file={path} does not exist.")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"experiment.restore_file={path} is not a torch checkpoint (torch.save writes a zip archive). {fix}"
        )
    try:
        state = torch.load(path, map_location="cpu", mmap=True)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"experiment.restore_file={path} could not be loaded ({reason}). {fix}") from error
    if not isinstance(state, Mapping):
        raise ValueError(f"experiment.restore_file={path} holds a {type(state).__name__}, not a checkpoint dict. {fix}")
    return state


def check_checkpoint_algorithm(path: str, algorithm: str, state_key: str) -> Mapping[str, Any]:
    """Refuses a checkpoint that another algorithm wrote: one of the SHAC family's (it has a ``state_key`` entry) for
    another algorithm, or another algorithm's (e.g. MAPPO's) for one of the SHAC family; returns the checkpoint."""
    state = read_checkpoint(path)
    ours = state.get(state_key)
    if algorithm in SHAC_FAMILY and not isinstance(ours, Mapping):
        raise ValueError(
            f"experiment.restore_file={path} was not written by shac, shacp or shacpp (it has no {state_key!r} entry; "
            f"e.g. a MAPPO checkpoint): algorithm={algorithm} resumes its own checkpoints only."
        )
    written_by = ours.get("algorithm") if isinstance(ours, Mapping) else None  # None also before it was saved
    if written_by is not None and written_by != algorithm:
        raise ValueError(
            f"experiment.restore_file={path} was written by {written_by}, not {algorithm}: resume it with "
            f"algorithm={written_by}."
        )
    if isinstance(ours, Mapping) and algorithm not in SHAC_FAMILY:
        raise ValueError(
            f"experiment.restore_file={path} was written by shac, shacp or shacpp, not {algorithm}: resume it with "
            "the algorithm that wrote it."
        )
    return state


def check_restore_file(algorithm: Shac, state_key: str) -> None:
    """Refuses ``experiment.restore_file`` unless the same algorithm wrote it for the same agent groups and network
    shapes (the policy, the critic and the learned models), naming what differs; called once the networks exist, before
    BenchMARL loads the file."""
    path = algorithm.experiment_config.restore_file
    if path is None:
        return
    state = check_checkpoint_algorithm(path, type(algorithm).__name__.lower(), state_key)
    ours = state[state_key]
    groups = {key[len("loss_") :] for key in state if key.startswith("loss_")}
    if groups != set(algorithm.group_map):
        raise ValueError(
            f"experiment.restore_file={path} holds the agent groups {sorted(groups)}, this experiment has "
            f"{sorted(algorithm.group_map)}: resume it on the task it was written for."
        )
    differences = []
    saved_groups = ours["window_update"]["groups"]
    for group, update in algorithm.update.groups.items():
        saved = saved_groups[group]
        critic = algorithm.experiment.losses[group].state_dict()
        differences += _shape_differences(f"{group} critic", critic, state[f"loss_{group}"])
        differences += _shape_differences(f"{group} policy", update.actor_loss.state_dict(), saved["actor"])
        models = {model.name: model for model in update.models}
        if set(models) != set(saved["models"]):
            differences.append(f"{group} learned models: {sorted(saved['models'])} saved, {sorted(models)} here")
            continue
        for name, model in models.items():
            saved_model = saved["models"][name]["loss"]
            differences += _shape_differences(f"{group} {name} model", model.loss.state_dict(), saved_model)
    if differences:
        shown = "; ".join(differences[:4]) + (f"; and {len(differences) - 4} more" if len(differences) > 4 else "")
        raise ValueError(
            f"experiment.restore_file={path} does not fit this experiment: {shown}. Resume with the task (n_agents), "
            "models and algorithm sizes it was written with: benchmarl's Experiment.reload_from_file(restore_file) "
            "rebuilds that experiment from the config.pkl of its run folder."
        )


def _shape_differences(what: str, expected: Mapping[str, Any], saved: Any) -> list[str]:
    """What differs between two flat state dicts: missing and unexpected entries, and tensor shapes."""
    if not isinstance(saved, Mapping):
        return [f"{what}: no state saved"]
    differences = [f"{what} {key}: not saved" for key in expected if key not in saved]
    differences += [f"{what} {key}: saved, not in this experiment" for key in saved if key not in expected]
    for key, value in expected.items():
        found = saved.get(key)
        if isinstance(value, torch.Tensor) and isinstance(found, torch.Tensor) and value.shape != found.shape:
            differences.append(f"{what} {key}: {list(found.shape)} saved, {list(value.shape)} here")
    return differences
