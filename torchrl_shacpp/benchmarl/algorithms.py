"""SHAC, SHAC+ and SHAC++ as BenchMARL algorithms (``algorithm=shac|shacp|shacpp``): thin glue over the TorchRL layer."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Optional, Tuple, Type

import torch
from benchmarl.algorithms.common import Algorithm, AlgorithmConfig
from benchmarl.experiment.callback import Callback
from benchmarl.models.common import ModelConfig
from benchmarl.utils import _read_yaml_config
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from torchrl.data import Composite, Unbounded
from torchrl.envs import EnvBase
from torchrl.objectives import HardUpdate, LossModule, SoftUpdate
from torchrl.objectives.utils import TargetNetUpdater

from torchrl_shacpp.benchmarl.envs import WindowStartDetach, is_vmas, rebuild_vmas_env
from torchrl_shacpp.benchmarl.models import CONFIG_DIR
from torchrl_shacpp.collectors import attach_policy_graph
from torchrl_shacpp.data import CoolDown, LearnedModel, make_stratified_cache, reward_items, value_items, world_items
from torchrl_shacpp.envs import VMAS_TASKS, detach_simulator_state
from torchrl_shacpp.modules import AxisAttentionWorldModel, gaussian_actor, window_world_model
from torchrl_shacpp.objectives import RewardModelLoss, SHACActorLoss, TDLambdaValueLoss, WorldModelLoss
from torchrl_shacpp.optim import FiniteGradientStep, skip_non_finite_steps


class SHACFamilyLoss(LossModule):
    """Every loss of one agent group, held together so that BenchMARL's checkpoint holds every network.

    BenchMARL trains what :meth:`forward` returns on minibatches of flattened transitions: the critic's TD(λ)
    regression for SHAC and SHAC+ (``value_in_loop``); nothing for SHAC++, whose critic trains from its
    stratified cache on the cool-down schedule like the world and reward models. The actor loss needs whole
    windows and runs once per window, outside that loop.

    Args:
        actor: the SHAC window objective.
        value: the critic's TD(λ) loss.
        reward: the reward model's loss (SHAC+, SHAC++).
        world: the world model's loss (SHAC++).

    Keyword Args:
        value_in_loop: whether :meth:`forward` returns ``loss_value``.
    """

    def __init__(
        self,
        actor: SHACActorLoss,
        value: TDLambdaValueLoss,
        reward: RewardModelLoss | None = None,
        world: WorldModelLoss | None = None,
        *,
        value_in_loop: bool,
    ) -> None:
        super().__init__()
        self.actor, self.value, self.reward, self.world = actor, value, reward, world
        self.value_in_loop = value_in_loop

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self.value_in_loop:
            return self.value(tensordict)
        return TensorDict({}, batch_size=[])


class _Hooks(Callback):
    """Forwards BenchMARL's callback hooks to the algorithm (callbacks are BenchMARL's only per-window seam)."""

    def __init__(self, algorithm: Shac) -> None:
        super().__init__()
        self.algorithm = algorithm

    def on_setup(self) -> None:
        self.algorithm.on_setup()

    def on_batch_collected(self, batch: TensorDictBase) -> None:
        self.algorithm.train_actor(batch)

    def on_train_step(self, batch: TensorDictBase, group: str) -> None:
        self.algorithm.update_target_critic(group)

    def on_train_end(self, training_td: TensorDictBase, group: str) -> None:
        self.algorithm.train_learned_models(group)

    def on_state_dict(self, state_dict: Dict[str, Any]) -> None:
        state_dict[STATE_KEY] = self.algorithm.training_state_dict()

    def on_load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.algorithm.load_training_state_dict(state_dict[STATE_KEY])


STATE_KEY = "torchrl_shacpp"
#: The paper's window length h, which its cache sizes assume.
PAPER_WINDOW_LENGTH = 32


class Shac(Algorithm):
    r"""SHAC (Xu et al., 2022) for multi-agent BenchMARL tasks: policy gradients through the differentiable simulator.

    One BenchMARL collection of ``on_policy_collected_frames_per_batch`` frames on ``on_policy_n_envs_per_worker``
    envs is one window of :math:`h = \text{frames} / \text{envs}` steps, collected with the simulator's autograd
    graph (``experiment.collect_with_grad=true``, set by ``algorithm=shac``). Per window:

    1. **actor**: one Adam step (``experiment.lr``, norm clip ``actor_max_grad_norm``) on
       :class:`~torchrl_shacpp.objectives.SHACActorLoss`, back-propagated through the rewards and dynamics of the
       window; then the graph is cut (the simulator's state and the carried observations are detached);
    2. **critic**: BenchMARL's optimiser loop regresses :math:`V` onto TD(λ) targets computed on the window
       (:class:`~torchrl_shacpp.objectives.TDLambdaValueLoss`, ``on_policy_n_minibatch_iters`` passes of
       ``on_policy_minibatch_size``), with a Polyak target critic (``experiment.polyak_tau``) when
       ``use_target_critic``; the actor bootstraps with the same critic as the targets.

    The policy is :math:`\mathcal N(\mu_\theta(o), \sigma^2)` with a fixed (or learned) state-independent
    :math:`\sigma`, :math:`\mu_\theta` the ``model`` config (per agent, ``share_policy_params`` as in BenchMARL);
    the critic and the learned models are ``critic_model`` configs, centralised. On VMAS the environment is rebuilt
    with the task's differentiable reward where the paper's tasks need one (transport, sampling), with the simulator's
    gradients on, and with time limits reported as truncations (see :func:`~torchrl_shacpp.benchmarl.envs.
    rebuild_vmas_env`). A non-finite actor or critic step is skipped, counted and logged; parameters never receive
    NaN. Logged per group: ``actor_loss``, ``action_bound_loss``, ``actor_grad_norm`` (the paper's Fig. 2),
    ``skipped_actor_steps``, ``skipped_critic_steps``; BenchMARL logs ``loss_value``; ``timers/actor_time`` is the
    actor step's wall time (BenchMARL's collection and training timers leave it out).

    Args:
        lmbda: TD(λ) parameter (paper: 0.95); the discount is ``experiment.gamma``.
        action_std: the policy's :math:`\sigma` (paper: 1), its initial value if learned.
        learn_std: learn a state-independent log-std.
        action_bound_coef: the action-bound penalty coefficient (paper: 1).
        actor_max_grad_norm: the actor's gradient-norm clip (paper: 1).
        share_param_critic: one critic for the group (pooled over agents) or one per agent.
        use_target_critic: bootstrap with a Polyak-averaged target critic (SHAC: yes; the authors' SHAC++: no).
    """

    #: Where the actor's gradient comes from: the simulator (SHAC), a reward model on simulator observations
    #: (SHAC+) or reward and world models (SHAC++).
    gradient_source = "simulator"

    def __init__(
        self,
        lmbda: float,
        action_std: float,
        learn_std: bool,
        action_bound_coef: float,
        actor_max_grad_norm: float,
        share_param_critic: bool,
        use_target_critic: bool,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.lmbda = lmbda
        self.action_std = action_std
        self.learn_std = learn_std
        self.action_bound_coef = action_bound_coef
        self.actor_max_grad_norm = actor_max_grad_norm
        self.share_param_critic = share_param_critic
        self.use_target_critic = use_target_critic
        self.window_length = self._check_experiment()
        self.windows = 0
        self.skipped_critic_steps = 0
        self.actor_steps: dict[str, FiniteGradientStep] = {}
        self.target_updaters: dict[str, TargetNetUpdater] = {}
        self.learned_models: dict[str, list[LearnedModel]] = {}
        self.window_start = WindowStartDetach()
        hooks = _Hooks(self)
        hooks.experiment = self.experiment
        self.experiment.callbacks = [*self.experiment.callbacks, hooks]  # a tuple when BenchMARL got none

    # ----------------------------------------------------------------------------------------------------------
    # Checks

    @property
    def simulator_graph(self) -> bool:
        """Whether the actor's gradient flows through the simulator (SHAC, SHAC+)."""
        return self.gradient_source != "world_model"

    def _check_experiment(self) -> int:
        """Refuses what cannot work, early and with the fix; returns the window length h."""
        name = type(self).__name__.lower()
        task = self.experiment.task
        if not self.experiment.continuous_actions:
            raise ValueError(
                f"{name} needs continuous actions: its policy gradient flows through the sampled actions "
                f"(reparameterisation), which discrete actions do not have. Task {task.name.lower()} was set up with "
                "discrete actions; use a task with continuous actions (VMAS: experiment.prefer_continuous_actions=true)."
            )
        for role, config in (("model", self.model_config), ("critic_model", self.critic_model_config)):
            if config.is_rnn:
                raise ValueError(
                    f"{name} does not support recurrent models ({role}={type(config).__name__}): windows are cut "
                    f"into flat transitions for the critic and caches. Use e.g. {role}=layers/mlp or "
                    f"{role}=layers/transformer."
                )
        if self.simulator_graph:
            if not is_vmas(task):
                raise ValueError(
                    f"{name} back-propagates through the simulator and needs a differentiable one (a vmas/ task); "
                    f"got {task.env_name()}/{task.name.lower()}. algorithm=shacpp learns a world model instead."
                )
            if not self.experiment_config.collect_with_grad:
                raise ValueError(
                    f"{name} needs the rollouts' autograd graph: set experiment.collect_with_grad=true "
                    f"(algorithm={name} sets it unless overridden)."
                )
        if self.gradient_source == "simulator" and is_vmas(task):
            task_name = task.name.lower()
            if task_name in VMAS_TASKS and not VMAS_TASKS[task_name].has_differentiable_reward:
                raise ValueError(
                    f"shac needs a differentiable reward, and vmas/{task_name}'s is not (it counts discrete events). "
                    "Use algorithm=shacp (learned reward, simulator dynamics) or algorithm=shacpp (learned reward and "
                    "world model)."
                )
        frames = self.experiment_config.collected_frames_per_batch(self.on_policy)
        envs = self.experiment_config.n_envs_per_worker(self.on_policy)
        if envs < 1 or frames % envs:
            raise ValueError(
                f"{name} treats one collection as one window of h = frames / envs steps on every env; "
                f"experiment.on_policy_collected_frames_per_batch={frames} is not a multiple of "
                f"experiment.on_policy_n_envs_per_worker={envs}. The paper's window: 512 envs x 32 steps "
                "(experiment=shacpp_paper)."
            )
        return frames // envs

    # ----------------------------------------------------------------------------------------------------------
    # Networks and losses

    def _group_shape(self, group: str) -> tuple[int, int]:
        """Number of agents and per-agent action features."""
        return len(self.group_map[group]), self.action_spec[group, "action"].shape[-1]

    def _get_policy_for_loss(self, group: str, model_config: ModelConfig, continuous: bool) -> TensorDictModule:
        n_agents, action_dim = self._group_shape(group)
        loc_model = model_config.get_model(
            input_spec=Composite({group: self.observation_spec[group].clone().to(self.device)}),
            output_spec=Composite(
                {group: Composite({"loc": Unbounded(shape=(n_agents, action_dim))}, shape=(n_agents,))}
            ),
            agent_group=group,
            input_has_agent_dim=True,
            n_agents=n_agents,
            centralised=False,
            share_params=self.experiment_config.share_policy_params,
            device=self.device,
            action_spec=self.action_spec,
        )
        return gaussian_actor(
            loc_model,
            action_dim=action_dim,
            loc_key=(group, "loc"),
            scale_key=(group, "scale"),
            action_key=(group, "action"),
            action_std=self.action_std,
            learn_std=self.learn_std,
            spec=self.action_spec[group, "action"],
        ).to(self.device)

    def _get_policy_for_collection(
        self, policy_for_loss: TensorDictModule, group: str, continuous: bool
    ) -> TensorDictModule:
        if self.simulator_graph:
            return TensorDictSequential(self.window_start, policy_for_loss)
        return policy_for_loss

    def _centralised_model(
        self, group: str, input_spec: Composite, input_has_agent_dim: bool, out_key: str
    ) -> TensorDictModuleBase:
        """A ``critic_model`` network over all agents' inputs writing ``(group, out_key)`` per agent, ``[n, 1]``.

        With ``share_param_critic`` it is one network whose pooled output is broadcast to the agents (MAPPO's
        shared critic); otherwise one output per agent.
        """
        n_agents, _ = self._group_shape(group)
        if self.share_param_critic:
            output_spec = Composite({out_key: Unbounded(shape=(1,))})
        else:
            output_spec = Composite(
                {group: Composite({out_key: Unbounded(shape=(n_agents, 1))}, shape=(n_agents,))}
            )
        model = self.critic_model_config.get_model(
            input_spec=input_spec,
            output_spec=output_spec,
            agent_group=group,
            input_has_agent_dim=input_has_agent_dim,
            n_agents=n_agents,
            centralised=True,
            share_params=self.share_param_critic,
            device=self.device,
            action_spec=self.action_spec,
        )
        if not self.share_param_critic:
            return model
        broadcast = TensorDictModule(
            functools.partial(_broadcast_to_agents, n_agents=n_agents), in_keys=[out_key], out_keys=[(group, out_key)]
        )
        return TensorDictSequential(model, broadcast)

    def _critic(self, group: str) -> TensorDictModuleBase:
        if self.state_spec is not None:
            return self._centralised_model(group, self.state_spec, False, "state_value")
        observation = Composite({group: self.observation_spec[group].clone().to(self.device)})
        return self._centralised_model(group, observation, True, "state_value")

    def _reward_model(self, group: str) -> TensorDictModuleBase:
        r""":math:`R_\theta(o_t, a_t)` per agent (or :math:`R_\theta(o_t, a_t, o_{t+1})` with
        ``reward_uses_next_observation``), a ``critic_model`` network over all agents' transitions."""
        observation = self.observation_spec[group, "observation"].clone().to(self.device)
        n_agents, _ = self._group_shape(group)
        transition = Composite(
            {
                group: Composite(
                    {"observation": observation, "action": self.action_spec[group, "action"].clone().to(self.device)},
                    shape=(n_agents,),
                )
            }
        )
        if self.reward_uses_next_observation:
            transition["next"] = Composite({group: Composite({"observation": observation.clone()}, shape=(n_agents,))})
        return self._centralised_model(group, transition, True, "predicted_reward")

    def _model_losses(self, group: str) -> tuple[RewardModelLoss | None, WorldModelLoss | None]:
        """The learned reward and world models' losses: none for SHAC."""
        return None, None

    def _get_loss(
        self, group: str, policy_for_loss: TensorDictModule, continuous: bool
    ) -> Tuple[LossModule, bool]:
        critic = self._critic(group)
        value = TDLambdaValueLoss(
            critic, gamma=self.experiment_config.gamma, lmbda=self.lmbda, use_target_network=self.use_target_critic
        )
        value.set_keys(reward=(group, "reward"), value=(group, "state_value"), value_target=(group, "value_target"))
        reward, world = self._model_losses(group)
        action_space = self.action_spec[group, "action"].space
        actor = SHACActorLoss(
            policy_for_loss,
            critic,
            gamma=self.experiment_config.gamma,
            value_params=value.bootstrap_params,
            action_low=action_space.low,
            action_high=action_space.high,
            action_bound_coef=self.action_bound_coef,
            reward_model=reward.reward_model if reward is not None else None,
            world_model=world.world_model if world is not None else None,
        )
        actor.set_keys(
            reward=(group, "reward"),
            value=(group, "state_value"),
            loc=(group, "loc"),
            predicted_reward=(group, "predicted_reward"),
        )
        self.actor_steps[group] = FiniteGradientStep(self._adam(actor.parameters()), self.actor_max_grad_norm)
        if self.use_target_critic:
            config = self.experiment_config
            self.target_updaters[group] = (
                SoftUpdate(value, tau=config.polyak_tau)
                if config.soft_target_update
                else HardUpdate(value, value_network_update_interval=config.hard_target_update_frequency)
            )
        self.learned_models[group] = self._learned_models(group, value, reward, world)
        losses = SHACFamilyLoss(actor, value, reward, world, value_in_loop=self.gradient_source != "world_model")
        # The target critic is updated by this algorithm (BenchMARL only finds targets that are direct children).
        return losses, False

    def _learned_models(
        self,
        group: str,
        value: TDLambdaValueLoss,
        reward: RewardModelLoss | None,
        world: WorldModelLoss | None,
    ) -> list[LearnedModel]:
        return []  # SHAC learns no model besides the critic, which BenchMARL's loop trains

    def _adam(self, params: Iterable[torch.nn.Parameter]) -> torch.optim.Adam:
        config = self.experiment_config
        return torch.optim.Adam(params, lr=config.lr, eps=config.adam_eps, **config.adam_extra_kwargs)

    def _get_parameters(self, group: str, loss: SHACFamilyLoss) -> Dict[str, Iterable]:
        if not loss.value_in_loop:
            return {}
        return {"loss_value": list(loss.value.value_network_params.flatten_keys().values())}

    # ----------------------------------------------------------------------------------------------------------
    # Environments and data

    def process_env_fun(self, env_fun):
        if not is_vmas(self.experiment.task):
            return env_fun

        def make_env() -> EnvBase:
            return rebuild_vmas_env(
                env_fun(),
                self.experiment.task,
                simulator_graph=self.simulator_graph,
                seed=self.experiment.seed,
            )

        return make_env

    def process_batch(self, group: str, batch: TensorDictBase) -> TensorDictBase:
        """Writes the TD(λ) targets of the ``[B, h]`` window (before BenchMARL flattens it) and caches it."""
        losses = self.experiment.losses[group]
        batch.set((group, "value_target"), losses.value.value_targets(batch))
        for model in self.learned_models[group]:
            model.store(batch)
        return batch

    # ----------------------------------------------------------------------------------------------------------
    # Per-window training (through _Hooks)

    def on_setup(self) -> None:
        """Guards BenchMARL's own optimisers (the critic's) against non-finite steps."""
        for optimizers in self.experiment.optimizers.values():
            for optimizer in optimizers.values():
                skip_non_finite_steps(optimizer, self._count_skipped_critic_step)

    def _count_skipped_critic_step(self) -> None:
        self.skipped_critic_steps += 1

    def train_actor(self, batch: TensorDictBase) -> None:
        """One actor step per group on the window ``batch`` (graph-carrying for SHAC/SHAC+), then the graph cut."""
        start = time.perf_counter()
        groups = list(self.group_map)
        log = {}
        for index, group in enumerate(groups):
            window = batch
            if not self.simulator_graph:
                window = attach_policy_graph(
                    batch,
                    self.get_policy_for_loss(group),
                    action_key=(group, "action"),
                    loc_key=(group, "loc"),
                    scale_key=(group, "scale"),
                )
            losses = self.experiment.losses[group].actor(window)
            step = self.actor_steps[group]
            info = step(losses["loss_actor"] + losses["loss_action_bound"], retain_graph=index < len(groups) - 1)
            log.update(
                {
                    f"train/{group}/actor_loss": losses["loss_actor"].item(),
                    f"train/{group}/action_bound_loss": losses["loss_action_bound"].item(),
                    f"train/{group}/actor_grad_norm": info["grad_norm"],
                    f"train/{group}/skipped_actor_steps": step.skipped_steps,
                    f"train/{group}/skipped_critic_steps": self.skipped_critic_steps,
                }
            )
        if self.simulator_graph:
            detach_simulator_state(self.experiment.rollout_env)
            self.window_start.cut()
        self.windows += 1
        log["timers/actor_time"] = time.perf_counter() - start
        self.experiment.logger.log(log, step=self.experiment.n_iters_performed)

    def update_target_critic(self, group: str) -> None:
        if group in self.target_updaters and self.experiment.losses[group].value_in_loop:
            self.target_updaters[group].step()

    def train_learned_models(self, group: str) -> None:
        """No learned models in SHAC; SHAC+ and SHAC++ train theirs here on the cool-down schedule."""

    def training_state_dict(self) -> dict[str, Any]:
        """What BenchMARL's checkpoint lacks: every optimiser's state, the caches and the counters."""
        return {
            "windows": self.windows,
            "skipped_critic_steps": self.skipped_critic_steps,
            "actor_optimizers": {group: step.optimizer.state_dict() for group, step in self.actor_steps.items()},
            "skipped_actor_steps": {group: step.skipped_steps for group, step in self.actor_steps.items()},
            "benchmarl_optimizers": {
                group: {name: optimizer.state_dict() for name, optimizer in optimizers.items()}
                for group, optimizers in self.experiment.optimizers.items()
            },
            "learned_models": {
                group: {model.name: model.state_dict() for model in models}
                for group, models in self.learned_models.items()
            },
        }

    def load_training_state_dict(self, state: dict[str, Any]) -> None:
        self.windows = state["windows"]
        self.skipped_critic_steps = state["skipped_critic_steps"]
        for group, step in self.actor_steps.items():
            step.optimizer.load_state_dict(state["actor_optimizers"][group])
            step.skipped_steps = state["skipped_actor_steps"][group]
        for group, optimizers in self.experiment.optimizers.items():
            for name, optimizer in optimizers.items():
                optimizer.load_state_dict(state["benchmarl_optimizers"][group][name])
        for group, models in self.learned_models.items():
            for model in models:
                model.load_state_dict(state["learned_models"][group][model.name])


def _broadcast_to_agents(value: torch.Tensor, n_agents: int) -> torch.Tensor:
    return value.unsqueeze(-2).expand(*value.shape[:-1], n_agents, value.shape[-1])


class Shacp(Shac):
    r"""SHAC+: SHAC whose reward is a learned model :math:`R_\theta(o_t, a_t)` on the simulator's observations.

    For tasks whose reward has no gradient (dispersion, discovery): the actor's gradient flows through the reward
    model and the simulator's dynamics. The reward model (a ``critic_model`` network over all agents'
    transitions) regresses the environment's rewards from a return-stratified cache of ``cache_size`` transitions
    in ``reward_bins`` bins, trained every ``model_train_every`` windows for ``model_epochs`` passes of
    ``model_minibatch_size`` (Adam at ``experiment.lr``, no clipping). Everything else is :class:`Shac`. Also
    logged per group: ``loss_reward`` at each model training and ``skipped_reward_steps``.

    Args:
        reward_uses_next_observation: the reward model reads :math:`o_{t+1}` too. The authors' reads
            :math:`(o_t, a_t)`: one that reads :math:`o_{t+1}` can read a sparse reward off the event it causes
            (dispersion's "eaten" flags) and give the actor no gradient towards the event.
        cache_size: transitions in each model cache (paper: 30,000).
        reward_bins: score bins of the reward cache (paper: 9).
        model_train_every: train the learned models every this many windows (paper: 10).
        model_epochs: passes over each cache per training (paper: 10).
        model_minibatch_size: model minibatch size (paper: 1,000).
        **kwargs: see :class:`Shac`.
    """

    gradient_source = "reward_model"

    def __init__(
        self,
        reward_uses_next_observation: bool,
        cache_size: int,
        reward_bins: int,
        model_train_every: int,
        model_epochs: int,
        model_minibatch_size: int,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.reward_uses_next_observation = reward_uses_next_observation
        self.cache_size = cache_size
        self.reward_bins = reward_bins
        self.model_minibatch_size = model_minibatch_size
        self.cooldown = CoolDown(every=model_train_every, epochs=model_epochs)
        self._caches_made = 0

    def _model_losses(self, group: str) -> tuple[RewardModelLoss | None, WorldModelLoss | None]:
        reward = RewardModelLoss(self._reward_model(group))
        reward.set_keys(reward=(group, "reward"), predicted_reward=(group, "predicted_reward"))
        return reward, None

    def _learned_model(
        self, name: str, loss: LossModule, capacity: int, bins: int, score_key, items
    ) -> LearnedModel:
        """A model trained with Adam (``experiment.lr``) from a stratified cache of ``capacity`` items in ``bins``
        bins; the cache has its own random generator, which checkpoints save and restore with it."""
        if capacity < bins:
            raise ValueError(f"The {name} cache of {capacity} items cannot hold {bins} bins; raise its size.")
        self._caches_made += 1
        generator = torch.Generator(device=self.device).manual_seed(self.experiment.seed * 1000 + self._caches_made)
        cache = make_stratified_cache(
            capacity, bins, score_key=score_key, batch_size=self.model_minibatch_size, device=self.device,
            generator=generator,
        )  # fmt: skip
        return LearnedModel(
            name, loss, cache, items, lr=self.experiment_config.lr, eps=self.experiment_config.adam_eps
        )

    @staticmethod
    def _transition_keys(group: str) -> dict[str, tuple[str, str]]:
        return dict(observation_key=(group, "observation"), action_key=(group, "action"), reward_key=(group, "reward"))

    def _learned_models(
        self,
        group: str,
        value: TDLambdaValueLoss,
        reward: RewardModelLoss | None,
        world: WorldModelLoss | None,
    ) -> list[LearnedModel]:
        items = functools.partial(reward_items, **self._transition_keys(group))
        return [self._learned_model("reward", reward, self.cache_size, self.reward_bins, ("next", group, "reward"), items)]

    def train_learned_models(self, group: str) -> None:
        """Trains the group's learned models on the cool-down schedule and logs their mean minibatch losses."""
        if not self.cooldown.should_train(self.windows - 1):
            return
        start = time.perf_counter()
        log = {}
        for model in self.learned_models[group]:
            log[f"train/{group}/loss_{model.name}"] = model.fit(self.cooldown)
            log[f"train/{group}/skipped_{model.name}_steps"] = model.step.skipped_steps
        if group in self.target_updaters and not self.experiment.losses[group].value_in_loop:
            self.target_updaters[group].step()  # a critic trained from its cache: one Polyak step per training
        log[f"timers/{group}/model_training_time"] = time.perf_counter() - start
        self.experiment.logger.log(log, step=self.experiment.n_iters_performed)


class Shacpp(Shacp):
    r"""SHAC++: policy gradients through learned world and reward models; the simulator needs no gradient.

    Per window (collected by BenchMARL's ordinary collector, without autograd): the actions' reparameterisation
    graph is re-attached (:func:`~torchrl_shacpp.collectors.attach_policy_graph`, same values and gradient as a
    graph-carrying collection); an axis-attention world model (:class:`~torchrl_shacpp.modules.AxisAttentionWorldModel`,
    ``world_*`` sizes, paper: 3 layers, hidden 64, feed-forward 128, 1 head) predicts the window's observations in
    one pass from the real first observation and those actions; the reward model and the critic score the
    predictions; one actor step. The world, reward and value models train from their own return-stratified caches
    (world: ``world_cache_size`` windows in ``world_bins`` bins; reward and value: ``cache_size`` transitions in
    ``reward_bins`` / ``value_bins`` bins) on the cool-down schedule of :class:`Shacp`, as the authors do; BenchMARL's
    optimiser loop trains nothing (set ``experiment.on_policy_n_minibatch_iters=1`` and a minibatch of the whole
    batch to spend no time in it). Works on any BenchMARL task with continuous actions. Also logged per group:
    ``loss_world``, ``loss_value``, ``skipped_{world,value}_steps`` and ``timers/<group>/model_training_time``.

    Args:
        world_cache_size: windows in the world cache (default: as many steps as ``cache_size`` windows of the paper's
            32 steps, i.e. ``cache_size`` windows at the paper's window length).
        world_bins: return bins of the world cache (paper: 25).
        value_bins: λ-target bins of the value cache (paper: 9).
        world_num_layers, world_hidden_size, world_feedforward_size, world_num_heads: world model sizes.
        world_checkpoint_chunks: recompute the world model's layers in backward, this many batch slices at a time
            (0: off); exact, for many agents (``benchmarks/results/world_model_scaling.md``).
        **kwargs: see :class:`Shacp` and :class:`Shac`. The authors' SHAC++ uses no target critic; with
            ``use_target_critic`` it takes one Polyak step (``experiment.polyak_tau``) after each cool-down training.
    """

    gradient_source = "world_model"

    def __init__(
        self,
        world_cache_size: Optional[int],
        world_bins: int,
        value_bins: int,
        world_num_layers: int,
        world_hidden_size: int,
        world_feedforward_size: int,
        world_num_heads: int,
        world_checkpoint_chunks: int,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.world_cache_size = world_cache_size
        self.world_bins = world_bins
        self.value_bins = value_bins
        self.world_sizes = dict(
            num_layers=world_num_layers,
            hidden_size=world_hidden_size,
            feedforward_size=world_feedforward_size,
            num_heads=world_num_heads,
            checkpoint_chunks=world_checkpoint_chunks,
        )

    def _model_losses(self, group: str) -> tuple[RewardModelLoss | None, WorldModelLoss | None]:
        reward, _ = super()._model_losses(group)
        observation_dim = self.observation_spec[group, "observation"].shape[-1]
        _, action_dim = self._group_shape(group)
        network = AxisAttentionWorldModel(observation_dim, action_dim, self.window_length, **self.world_sizes)
        world = WorldModelLoss(
            window_world_model(
                network.to(self.device), observation_key=(group, "observation"), action_key=(group, "action")
            )
        )
        world.set_keys(observation=(group, "observation"))
        return reward, world

    def _learned_models(
        self,
        group: str,
        value: TDLambdaValueLoss,
        reward: RewardModelLoss | None,
        world: WorldModelLoss | None,
    ) -> list[LearnedModel]:
        world_cache_size = self.world_cache_size
        if world_cache_size is None:  # as many steps as the paper's cache_size windows of 32 steps
            world_cache_size = max(self.world_bins, self.cache_size * PAPER_WINDOW_LENGTH // self.window_length)
        world_windows = functools.partial(world_items, **self._transition_keys(group))
        value_targets = functools.partial(
            value_items, observation_key=(group, "observation"), value_target_key=(group, "value_target")
        )
        return [
            self._learned_model("world", world, world_cache_size, self.world_bins, "score", world_windows),
            *super()._learned_models(group, value, reward, world),
            self._learned_model(
                "value", value, self.cache_size, self.value_bins, (group, "value_target"), value_targets
            ),
        ]


# ---------------------------------------------------------------------------------------------------------------
# Configs


def _from_package_yaml(cls: Type[AlgorithmConfig], name: str, path: Optional[str]) -> AlgorithmConfig:
    """The ``algorithm:`` block of this package's ``algorithm/<name>.yaml`` (or of ``path``) as ``cls``."""
    config = _read_yaml_config(str(path or CONFIG_DIR / "algorithm" / f"{name}.yaml"))
    return cls(**config.get("algorithm", config))


@dataclass
class ShacConfig(AlgorithmConfig):
    """Configuration of :class:`Shac`; defaults are the paper's (``algorithm/shac.yaml``)."""

    lmbda: float = 0.95
    action_std: float = 1.0
    learn_std: bool = False
    action_bound_coef: float = 1.0
    actor_max_grad_norm: float = 1.0
    share_param_critic: bool = True
    use_target_critic: bool = True

    @staticmethod
    def associated_class() -> Type[Algorithm]:
        return Shac

    @classmethod
    def get_from_yaml(cls, path: Optional[str] = None) -> AlgorithmConfig:
        return _from_package_yaml(cls, cls.associated_class().__name__.lower(), path)

    @staticmethod
    def on_policy() -> bool:
        return True

    @staticmethod
    def supports_continuous_actions() -> bool:
        return True

    @staticmethod
    def supports_discrete_actions() -> bool:
        # Accepted here so that the algorithm can refuse discrete actions with an error that names the fix.
        return True

    @staticmethod
    def has_centralized_critic() -> bool:
        return True


@dataclass
class ShacpConfig(ShacConfig):
    """Configuration of :class:`Shacp` (``algorithm/shacp.yaml``)."""

    reward_uses_next_observation: bool = False
    cache_size: int = 30_000
    reward_bins: int = 9
    model_train_every: int = 10
    model_epochs: int = 10
    model_minibatch_size: int = 1000

    @staticmethod
    def associated_class() -> Type[Algorithm]:
        return Shacp


@dataclass
class ShacppConfig(ShacpConfig):
    """Configuration of :class:`Shacpp` (``algorithm/shacpp.yaml``)."""

    use_target_critic: bool = False
    world_cache_size: Optional[int] = None
    world_bins: int = 25
    value_bins: int = 9
    world_num_layers: int = 3
    world_hidden_size: int = 64
    world_feedforward_size: int = 128
    world_num_heads: int = 1
    world_checkpoint_chunks: int = 0

    @staticmethod
    def associated_class() -> Type[Algorithm]:
        return Shacpp


__all__ = ["SHACFamilyLoss", "Shac", "ShacConfig", "Shacp", "ShacpConfig", "Shacpp", "ShacppConfig"]
