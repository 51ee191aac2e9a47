"""SHAC as a BenchMARL algorithm (``algorithm=shac``): policy gradients through the differentiable simulator."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple, Type

import torch
from benchmarl.algorithms.common import Algorithm, AlgorithmConfig
from benchmarl.environments import TaskClass
from benchmarl.experiment.callback import Callback
from benchmarl.models.common import ModelConfig
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictSequential
from tensordict.nn.distributions import AddStateIndependentNormalScale
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule

from torchrl_shacpp.benchmarl import networks, validation
from torchrl_shacpp.benchmarl.configs import read_config
from torchrl_shacpp.benchmarl.envs import is_vmas, rebuild_vmas_env
from torchrl_shacpp.collectors import WindowGraphCut
from torchrl_shacpp.envs import VMAS_TASKS, detach_simulator_state
from torchrl_shacpp.objectives import SHACActorLoss, TDLambdaValueLoss
from torchrl_shacpp.optim import (
    FiniteGradientStep,
    PolicyMeanStepBound,
    load_state_keeping_rates,
    skip_non_finite_steps,
)
from torchrl_shacpp.trainers import CoolDown, GradientSource, GroupUpdate, SimulatorGradient, WindowUpdate

#: Where the algorithm keeps its part of a BenchMARL checkpoint.
STATE_KEY = "torchrl_shacpp"
#: The rate that ``lr_schedule="linear"`` ends at unless ``lr_final`` says otherwise (SHAC's, NVlabs/DiffRL).
LR_FLOOR = 1e-5


class Shac(Algorithm):
    r"""SHAC (Xu et al., 2022) for multi-agent BenchMARL tasks: policy gradients through the differentiable simulator.

    Each BenchMARL collection (``on_policy_collected_frames_per_batch`` frames on ``on_policy_n_envs_per_worker``
    envs, i.e. T steps) is collected with the simulator's autograd graph (``experiment.collect_with_grad=true``, set
    by ``algorithm=shac``), cut every ``window_length`` steps into windows. Then the
    :class:`~torchrl_shacpp.trainers.WindowUpdate` takes, in order: one actor step per window (Adam at ``actor_lr``,
    norm clip ``actor_max_grad_norm``) on :class:`~torchrl_shacpp.objectives.SHACActorLoss`, back-propagated
    through the window's rewards and dynamics; the graph cut; the TD(λ) targets of the collection. BenchMARL's
    optimiser loop then regresses the critic onto them (:class:`~torchrl_shacpp.objectives.TDLambdaValueLoss`,
    ``on_policy_n_minibatch_iters`` passes of ``on_policy_minibatch_size`` at ``critic_lr``), with a Polyak
    target critic (``experiment.polyak_tau``) when ``use_target_critic``; the actor bootstraps with the same critic
    as the targets.

    The policy is :math:`\mathcal N(\mu_\theta(o), \sigma^2)` clamped to the action box, with a fixed (or learned)
    state-independent :math:`\sigma` and :math:`\mu_\theta` the ``model`` config; the critic is a centralised
    ``critic_model`` (:mod:`~torchrl_shacpp.benchmarl.networks`). On VMAS the environment is rebuilt with the task's
    differentiable reward where a task needs one (transport, sampling, navigation), the simulator's gradients on, and
    time limits reported as truncations (:func:`~torchrl_shacpp.benchmarl.envs.rebuild_vmas_env`). A non-finite
    actor or critic step is skipped, counted and logged; parameters never receive NaN. Logged per group:
    ``actor_loss``, ``action_bound_loss``, ``actor_grad_norm`` (the paper's Fig. 2; means over the collection's
    windows), ``action_mean_loss``, ``action_mean_weight`` and ``action_mean_share`` (the control cost, its
    coefficient as applied and the share of policy-mean elements it reaches),
    ``skipped_actor_steps``, ``skipped_critic_steps``; BenchMARL logs ``loss_value``;
    ``timers/actor_time`` is the actor steps' wall time (BenchMARL's timers leave it out).

    The checkpoint's ``torchrl_shacpp`` entry holds what BenchMARL's lacks: the policy and its optimiser, the
    critic's optimiser, the learned models with their optimisers and caches, and the counters.

    Args:
        lmbda: TD(λ) parameter (paper: 0.95); the discount is ``experiment.gamma``.
        action_std: the policy's :math:`\sigma` (paper: 1), its initial value if learned.
        learn_std: learn a state-independent log-std (its mean σ logged per collection as ``action_std``).
        action_std_final: with a number, σ falls linearly from ``action_std`` to it over the experiment's
            iterations, :math:`\sigma_k = \sigma_0 + (\sigma_{final} - \sigma_0)\, k / (K - 1)` for collection k of K
            (logged as ``action_std``): broad actions for the first models and critic, precise ones late. K comes from
            ``experiment.max_n_frames`` (or ``max_n_iters``), so the budget sets the pace. ``None`` (the paper's)
            keeps σ fixed.
        clamp_actions: clamp the policy's samples to the action box, as the authors' policy does and as the simulator
            applies them; the learned models of SHAC+/SHAC++ then see the applied actions (off: the raw samples).
        deterministic_clamped_mean: with ``clamp_actions``, the deterministic action (BenchMARL's deterministic
            evaluation) is the mean of the clamped action, the action the policy was trained to take on average
            (:class:`~torchrl_shacpp.modules.ClampedNormal`), instead of the mean :math:`\mu` clamped, which acts
            with a larger gain (by 1 / 0.68 near 0 at σ = 1 on [-1, 1]). Off by default: on navigation it reads
            higher before 30k frames and level or mixed after (``benchmarks/results/navigation_reward_model.md``).
        action_bound_coef: the action-bound penalty coefficient (paper: 1).
        action_mean_coef: the control cost's coefficient, :math:`c_\mu \operatorname{mean}(\mu^2)` on the policy
            mean (the paper has none; :class:`~torchrl_shacpp.objectives.SHACActorLoss`): where the return has no
            gradient, as for an agent pressed into a wall that VMAS clamps it at, it relaxes the mean to 0. Off (0)
            by default.
        action_mean_relative: the control cost's coefficient times the running mean of the return's gradient
            w.r.t. the policy mean, so that ``action_mean_coef`` does not depend on the task's reward scale (the mean
            settles at :math:`|\mu_i| = |g_i| / (2 c_\mu \bar g)`; one more backward pass per actor step). Off by
            default; needs ``action_mean_coef > 0``. On dispersion n=3 c = 1 starts near the absolute 0.1 and puts
            SHAC++ ahead of MAPPO from 122k frames (6 seeds); on navigation it stops the agents short of their goals
            as the absolute cost does.
        action_mean_gate: with ``action_mean_relative``, the control cost reaches only the policy-mean elements whose
            action's return gradient is below ``action_mean_gate`` times the running mean (e.g. 0.1: an agent pressed
            into a wall, not one on its way to a goal); 0 (the default) reaches every element. At 0.1 navigation keeps
            its way to the goals, and dispersion n=3 loses the relative cost's lead at 122k
            (``benchmarks/results/learning_vs_mappo/control_cost_scale/``).
        action_mean_coef_final: with a number, the control cost's coefficient falls linearly from
            ``action_mean_coef`` to it over the experiment's iterations, :math:`c_k = c_0 + (c_{final} - c_0)\, k / K`
            at collection k of K (the rates' schedule): a cost that turns the agents from the walls early and
            leaves the precision at the goal to the return late. ``None`` (the default) keeps it fixed. On
            dispersion n=3, relative c from 1 to 0.1 over 368k frames: 0.9 on 6 of 6 seeds (317k ± 60k frames), ahead
            of MAPPO at every evaluation from 122k; with c fixed at 1 it levels off at 0.80.
        actor_lr: the actor's Adam learning rate (paper: 1e-3).
        critic_lr: the critic's Adam learning rate (paper: 1e-3), given to BenchMARL's critic optimiser in place of
            ``experiment.lr``, whose default (5e-5) is MAPPO's; ``None`` keeps ``experiment.lr``.
        actor_max_grad_norm: the actor's gradient-norm clip (paper: 1).
        actor_skip_grad_norm: an actor step whose gradient norm (before clipping) is above this is skipped and
            counted in ``skipped_actor_steps`` (the clip keeps an exploded gradient's direction); ``None`` (the
            paper's) skips non-finite ones only. Off by default: on dispersion with 3 agents SHAC++'s actor gradient
            norms rise from about 1 to 1e2-6e9 as its return collapses, and skipping those above 10 did not stop the
            collapse (``benchmarks/results/learning_vs_mappo/README.md``).
        actor_max_mean_change: with a number :math:`\delta`, each actor step is shrunk so that the policy's mean on
            the step's observations moves by at most :math:`\delta` (root mean square over observations and action
            components; :class:`~torchrl_shacpp.optim.PolicyMeanStepBound`), logged as ``actor_mean_change`` and
            ``actor_step_scale``; ``None`` (the paper's) bounds only the gradient's norm.
        lr_schedule: ``"constant"`` (the paper's) or ``"linear"``, SHAC's: the actor's and the critic's rates fall
            linearly from ``actor_lr`` and ``critic_lr`` to ``lr_final`` over the experiment's iterations,
            :math:`\mathrm{lr}_k = \mathrm{lr}_0 + (\mathrm{lr}_{final} - \mathrm{lr}_0)\, k / K` at collection k
            of K (logged as ``actor_lr``). A critic trained from its own cache (SHAC++'s ``critic_from_cache``)
            keeps ``model_lr``.
        lr_final: the rate ``lr_schedule="linear"`` ends at; ``None``: SHAC's, :data:`LR_FLOOR`. A larger one keeps
            a late step (navigation: 1e-3 from SHAC++'s 3e-3, ``benchmarks/results/navigation_reward_model.md``).
        window_length: the actor's window h (paper: 32): a collection of T steps gives T / h actor steps (the last
            window shorter when h does not divide T); ``None`` makes each collection one window.
        share_param_critic: one critic for the group (pooled over agents) or one per agent.
        critic_centralised: the critic reads every agent's observation (or the global state), MAPPO's; ``False``:
            each agent's value from its own observation, IPPO's.
        critic_slots: ``[own_features, slot_features]``: each agent's value from its own state and the set of its
            observation's entity slots, one encoder for every slot (:class:`~torchrl_shacpp.modules.SlotSet`;
            dispersion: ``[4, 3]``), with ``critic_centralised=false``; ``None``: the ``critic_model`` network.
        use_target_critic: bootstrap with a Polyak-averaged target critic (SHAC: yes; the authors' SHAC++: no).
        actor_value_gradient: the weight (>= 0) of the bootstrap critic's gradient w.r.t. the window's last
            observations in the actor's gradient (the paper's: 1; 0: the window's rewards' gradient alone; above 1
            the critic's part amplified; the objective's value is the same);
            :class:`~torchrl_shacpp.objectives.SHACActorLoss`'s ``value_gradient``.
        critic_reward: the name of a per-agent entry of the group's info that the critic learns the return of, in
            place of the reward the actor (and a reward model) learns from; ``None``: the reward. Meant for a
            potential-based shaping paid in the reward, :math:`\tilde r_t = r_t + \Phi_{t+1} - \Phi_t`
            (``task=vmas/transport_differentiable +task.approach_reward=true``, whose info ``task_reward`` is VMAS's
            reward): a critic of the shaped return learns :math:`V - \Phi` and its bootstrap takes the potential's
            gradient back out of the actor's; a critic of the task's return keeps it, the window objective being
            about the task's plus :math:`\Phi(s_h) - \Phi(s_0)`.
        actor_likelihood_ratio: the weight (>= 0) of the likelihood-ratio (PPO-clipped, zeroth-order) estimate of
            the actor's gradient from the window's real rewards, beside the pathwise one (0: the paper's, none);
            :class:`~torchrl_shacpp.objectives.SHACActorLoss`'s ``likelihood_ratio_weight``, its advantage's GAE
            :math:`\lambda` the critic's ``lmbda``.
        actor_likelihood_ratio_steps: PPO's steps of the same clipped surrogate per collection, each on
            ``experiment.on_policy_minibatch_size`` of its transitions, with their own Adam: MAPPO's update of the
            actor beside SHAC's (:class:`~torchrl_shacpp.trainers.WindowUpdate`'s ``likelihood_ratio_steps``; 0, the
            paper's, none).
        actor_likelihood_ratio_lr: their Adam's learning rate (PPO's, 3e-4, by default; ``lr_schedule`` leaves it).
        actor_likelihood_ratio_collections: the collections their minibatches are drawn from, the last this many
            (1, MAPPO's: this one): PPO's steps on more transitions than a SHAC collection holds, each collection's
            advantages computed again with the current critic (``WindowUpdate``'s ``likelihood_ratio_collections``).
    """

    #: Whether the collected windows carry the simulator's autograd graph (SHAC, SHAC+).
    simulator_graph = True
    #: SHAC learns no model for its actor to wait for (:class:`Shacp` sets it from its config).
    actor_waits_for_models = False
    #: SHAC's windows carry the simulator's graph: no replayed actor steps (:class:`Shacpp` sets them from its config).
    actor_replay_steps = 0
    actor_replay_windows = 32
    #: SHAC's actor differentiates through no world model (:class:`Shacpp` sets its weight from its config).
    actor_world_gradient = 1.0

    def __init__(
        self,
        lmbda: float,
        action_std: float,
        learn_std: bool,
        action_std_final: Optional[float],
        clamp_actions: bool,
        deterministic_clamped_mean: bool,
        action_bound_coef: float,
        action_mean_coef: float,
        action_mean_relative: bool,
        action_mean_gate: float,
        action_mean_coef_final: Optional[float],
        actor_lr: float,
        critic_lr: Optional[float],
        actor_max_grad_norm: float,
        actor_skip_grad_norm: Optional[float],
        actor_max_mean_change: Optional[float],
        lr_schedule: str,
        lr_final: Optional[float],
        window_length: Optional[int],
        share_param_critic: bool,
        critic_centralised: bool,
        critic_slots: Optional[List[int]],
        use_target_critic: bool,
        actor_value_gradient: float,
        critic_reward: Optional[str],
        actor_likelihood_ratio: float,
        actor_likelihood_ratio_steps: int,
        actor_likelihood_ratio_lr: float,
        actor_likelihood_ratio_collections: int,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.lmbda = lmbda
        self.action_std = action_std
        self.learn_std = learn_std
        self.action_std_final = action_std_final
        self.clamp_actions = clamp_actions
        self.deterministic_clamped_mean = deterministic_clamped_mean
        self.action_bound_coef = action_bound_coef
        self.action_mean_coef = action_mean_coef
        self.action_mean_relative = action_mean_relative
        self.action_mean_gate = action_mean_gate
        self.action_mean_coef_final = action_mean_coef_final
        self.actor_lr = actor_lr
        self.critic_lr = critic_lr
        self.actor_max_grad_norm = actor_max_grad_norm
        self.actor_skip_grad_norm = actor_skip_grad_norm
        self.actor_max_mean_change = actor_max_mean_change
        self.lr_schedule = lr_schedule
        self.lr_final = LR_FLOOR if lr_final is None else lr_final
        self.share_param_critic = share_param_critic
        self.critic_centralised = critic_centralised
        self.critic_slots = critic_slots
        self.use_target_critic = use_target_critic
        self.actor_value_gradient = actor_value_gradient
        self.critic_reward = critic_reward
        self.actor_likelihood_ratio = actor_likelihood_ratio
        self.actor_likelihood_ratio_steps = actor_likelihood_ratio_steps
        self.actor_likelihood_ratio_lr = actor_likelihood_ratio_lr
        self.actor_likelihood_ratio_collections = actor_likelihood_ratio_collections
        self.collection_length = self._check_experiment()
        self.window_length = window_length
        self.groups: dict[str, GroupUpdate] = {}
        self.update: WindowUpdate | None = None  # built once every group's losses exist (on_setup)
        self.skipped_critic_steps = {group: 0 for group in self.group_map}
        self.graph_cut = WindowGraphCut(self._cut_simulator, window_length=window_length)
        hooks = _Hooks(self)
        hooks.experiment = self.experiment
        self.experiment.callbacks = [*self.experiment.callbacks, hooks]  # a tuple when BenchMARL got none

    # ----------------------------------------------------------------------------------------------------------
    # Checks

    def _check_experiment(self) -> int:
        """Refuses what cannot work, early and with the fix; returns the collection's length T in steps."""
        validation.check_experiment(self)
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
        refusal = self.task_refusal(task)
        if refusal is not None:
            raise ValueError(refusal)
        if self.simulator_graph and not self.experiment_config.collect_with_grad:
            raise ValueError(
                f"{name} needs the rollouts' autograd graph: set experiment.collect_with_grad=true "
                f"(algorithm={name} sets it unless overridden)."
            )
        frames = self.experiment_config.collected_frames_per_batch(self.on_policy)
        envs = self.experiment_config.n_envs_per_worker(self.on_policy)
        if envs < 1 or frames % envs:
            raise ValueError(
                f"{name} cuts each collection of T = frames / envs steps on every env into windows; "
                f"experiment.on_policy_collected_frames_per_batch={frames} is not a multiple of "
                f"experiment.on_policy_n_envs_per_worker={envs}. The paper's window: 512 envs x 32 steps "
                "(experiment=shacpp_paper)."
            )
        return frames // envs

    @classmethod
    def task_refusal(cls, task: TaskClass) -> str | None:
        """Why the algorithm cannot train on ``task``, or ``None`` if it can: SHAC and SHAC+ back-propagate through
        the simulator (VMAS tasks only), SHAC through the task's reward as well (not dispersion's or discovery's).
        The set-up refuses such a task with this message; the paper's comparison skips it
        (:mod:`torchrl_shacpp.benchmark`)."""
        name = cls.__name__.lower()
        if cls.simulator_graph and not is_vmas(task):
            return (
                f"{name} back-propagates through the simulator and needs a differentiable one (a vmas/ task); "
                f"got {task.env_name()}/{task.name.lower()}. algorithm=shacpp learns a world model instead."
            )
        task_name = task.name.lower()
        if cls._needs_differentiable_reward() and is_vmas(task) and task_name in VMAS_TASKS:
            if not VMAS_TASKS[task_name].has_differentiable_reward:
                return (
                    f"shac needs a differentiable reward, and vmas/{task_name}'s is not (it counts discrete events). "
                    "Use algorithm=shacp (learned reward, simulator dynamics) or algorithm=shacpp (learned reward and "
                    "world model)."
                )
        return None

    @staticmethod
    def _needs_differentiable_reward() -> bool:
        """Whether the actor back-propagates through the task's own reward (SHAC)."""
        return True

    # ----------------------------------------------------------------------------------------------------------
    # Networks and losses

    def _get_policy_for_loss(self, group: str, model_config: ModelConfig, continuous: bool) -> TensorDictModule:
        return networks.policy(
            self, group, action_std=self.action_std, learn_std=self.learn_std, clamp=self.clamp_actions,
            clamped_mean=self.deterministic_clamped_mean,
        )  # fmt: skip

    def _get_policy_for_collection(
        self, policy_for_loss: TensorDictModule, group: str, continuous: bool
    ) -> TensorDictModule:
        if self.simulator_graph:
            return TensorDictSequential(self.graph_cut, policy_for_loss)
        return policy_for_loss

    def gradient_source(self, group: str, policy: TensorDictModule) -> GradientSource:
        """What carries the actor's gradient: SHAC's is the simulator."""
        return SimulatorGradient()

    def _get_loss(
        self, group: str, policy_for_loss: TensorDictModule, continuous: bool
    ) -> Tuple[LossModule, bool]:
        """The critic's TD(λ) loss, which BenchMARL trains; the actor and the learned models join the window update."""
        critic = networks.critic(
            self, group, share_params=self.share_param_critic, centralised=self.critic_centralised,
            slots=self.critic_slots,
        )
        value = TDLambdaValueLoss(
            critic, gamma=self.experiment_config.gamma, lmbda=self.lmbda, use_target_network=self.use_target_critic
        )
        value.set_keys(
            reward=self._critic_reward_key(group), value=(group, "state_value"), value_target=(group, "value_target")
        )
        source = self.gradient_source(group, policy_for_loss)
        action_space = self.action_spec[group, "action"].space
        actor = SHACActorLoss(
            policy_for_loss,
            critic,
            gamma=self.experiment_config.gamma,
            value_params=value.bootstrap_params,
            action_low=action_space.low,
            action_high=action_space.high,
            action_bound_coef=self.action_bound_coef,
            action_mean_coef=self.action_mean_coef,
            action_mean_relative=self.action_mean_relative,
            action_mean_gate=self.action_mean_gate,
            reward_model=source.reward_model,
            world_model=source.world_model,
            value_gradient=self.actor_value_gradient,
            world_gradient=self.actor_world_gradient,
            likelihood_ratio_weight=self.actor_likelihood_ratio,
            advantage_lmbda=self.lmbda,
        )
        actor.set_keys(
            reward=(group, "reward"),
            value=(group, "state_value"),
            loc=(group, "loc"),
            scale=(group, "scale"),
            sample_log_prob=(group, "sample_log_prob"),
            advantage=(group, "advantage"),
            action=(group, "action"),
            predicted_reward=(group, "predicted_reward"),
        )
        actor_step = FiniteGradientStep(
            self._adam(actor.parameters(), self.actor_lr), self.actor_max_grad_norm, self.actor_skip_grad_norm
        )
        step_bound = None
        if self.actor_max_mean_change is not None:
            step_bound = PolicyMeanStepBound(
                policy_for_loss, actor_step.parameters, actor.tensor_keys.loc, self.actor_max_mean_change
            )
        likelihood_ratio_step = None
        if self.actor_likelihood_ratio_steps:
            likelihood_ratio_step = FiniteGradientStep(
                self._adam(actor.parameters(), self.actor_likelihood_ratio_lr), self.actor_max_grad_norm
            )
        self.groups[group] = GroupUpdate(
            actor, actor_step, value, source, step_bound=step_bound, likelihood_ratio_step=likelihood_ratio_step
        )
        return value, self.use_target_critic

    def _critic_reward_key(self, group: str) -> NestedKey:
        """Where the critic's rewards are: the group's reward, or its info entry ``critic_reward`` (which the set-up
        checks, :func:`~torchrl_shacpp.benchmarl.validation.check_experiment`)."""
        return (group, "reward") if self.critic_reward is None else (group, "info", self.critic_reward)

    def _adam(self, params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
        config = self.experiment_config
        return torch.optim.Adam(params, lr=lr, eps=config.adam_eps, **config.adam_extra_kwargs)

    def _get_parameters(self, group: str, loss: TDLambdaValueLoss) -> Dict[str, Iterable]:
        return {"loss_value": list(loss.value_network_params.flatten_keys().values())}

    def cooldown(self) -> CoolDown | None:
        """When the learned models train: SHAC learns none besides the critic."""
        return None

    # ----------------------------------------------------------------------------------------------------------
    # Environments and data

    def process_env_fun(self, env_fun):
        if not is_vmas(self.experiment.task):
            return env_fun

        def make_env():
            return rebuild_vmas_env(
                env_fun(), self.experiment.task, simulator_graph=self.simulator_graph, seed=self.experiment.seed
            )

        return make_env

    def process_batch(self, group: str, batch: TensorDictBase) -> TensorDictBase:
        """The batch already holds the critic's TD(λ) targets (written by the window update); transitions with a
        non-finite critic input or target are dropped and counted (``dropped_critic_items``)."""
        batch = self.update.finite_critic_items(group, batch)
        dropped = {f"train/{group}/dropped_critic_items": self.update.groups[group].dropped_critic_items}
        self.experiment.logger.log(dropped, step=self.experiment.n_iters_performed)
        return batch

    def _cut_simulator(self) -> None:
        detach_simulator_state(self.experiment.rollout_env)

    # ----------------------------------------------------------------------------------------------------------
    # Per-collection training (through _Hooks)

    def on_setup(self) -> None:
        """Builds the window update over every group, and guards BenchMARL's critic optimisers against non-finite
        steps."""
        self.update = WindowUpdate(
            self.groups,
            window_length=self.window_length,
            cooldown=self.cooldown(),
            cut_graph=self.graph_cut.arm if self.simulator_graph else lambda: None,
            actor_waits_for_models=self.actor_waits_for_models,
            actor_replay_steps=self.actor_replay_steps,
            actor_replay_windows=self.actor_replay_windows,
            likelihood_ratio_steps=self.actor_likelihood_ratio_steps,
            likelihood_ratio_minibatch_size=self.experiment_config.on_policy_minibatch_size,
            likelihood_ratio_collections=self.actor_likelihood_ratio_collections,
        )
        for group, optimizers in self.experiment.optimizers.items():
            for optimizer in optimizers.values():
                skip_non_finite_steps(optimizer, lambda group=group: self._count_skipped_critic_step(group))
                if self.critic_lr is not None:
                    for param_group in optimizer.param_groups:
                        param_group["lr"] = self.critic_lr
        validation.check_restore_file(self, STATE_KEY)

    def _count_skipped_critic_step(self, group: str) -> None:
        self.skipped_critic_steps[group] += 1

    def on_batch_collected(self, batch: TensorDictBase) -> None:
        scheduled = self._decay_learning_rates() if self.lr_schedule == "linear" else {}
        if self.action_mean_coef_final is not None:
            self._decay_action_mean_coef()
        logs = self.update(batch)
        logs.update(scheduled)
        logs.update({f"train/{group}/skipped_critic_steps": n for group, n in self.skipped_critic_steps.items()})
        if self.learn_std or self.action_std_final is not None:  # the σ each collection was drawn with
            logs.update({f"train/{group}/action_std": batch.get((group, "scale")).mean().item() for group in self.groups})
        if self.action_std_final is not None:
            self._anneal_action_std()
        self.experiment.logger.log(logs, step=self.experiment.n_iters_performed)

    def _anneal_action_std(self) -> None:
        """Sets σ for the next collection on the linear schedule from ``action_std`` to ``action_std_final``. Like
        the rates, σ follows from the iteration count (and a checkpoint keeps the policy's σ), so a resumed run goes on
        where it stopped."""
        last = self.experiment_config.get_max_n_iters(self.on_policy) - 1
        progress = min((self.experiment.n_iters_performed + 1) / last, 1.0) if last > 0 else 1.0
        action_std = self.action_std + (self.action_std_final - self.action_std) * progress
        for group in self.groups:
            for module in self.get_policy_for_loss(group).modules():
                if isinstance(module, AddStateIndependentNormalScale):
                    module.state_independent_scale.fill_(math.log(action_std))

    def _on_linear_schedule(self, initial: float, final: float) -> float:
        r"""This collection's value on a linear schedule over the experiment's K collections,
        :math:`x_k = x_0 + (x_{final} - x_0)\, k / K` at collection k (the rates' and the control cost's)."""
        progress = self.experiment.n_iters_performed / self.experiment_config.get_max_n_iters(self.on_policy)
        return initial + (final - initial) * progress

    def _decay_action_mean_coef(self) -> None:
        """Sets the control cost's coefficient for this collection on the linear schedule from ``action_mean_coef``
        to ``action_mean_coef_final`` (logged within ``action_mean_weight``). Like the rates, it follows from the
        iteration count, so a resumed run goes on where it stopped."""
        coef = self._on_linear_schedule(self.action_mean_coef, self.action_mean_coef_final)
        for update in self.groups.values():
            update.actor_loss.action_mean_coef = coef

    def _decay_learning_rates(self) -> dict[str, float]:
        """Sets the actor's and the critic's rates for this collection on SHAC's linear schedule and returns the
        actors' for the log. They follow from the iteration count rather than from a stepped scheduler, so a resumed
        run goes on where it stopped."""
        actor_lr = self._on_linear_schedule(self.actor_lr, self.lr_final)
        initial_critic_lr = self.experiment_config.lr if self.critic_lr is None else self.critic_lr
        critic_lr = self._on_linear_schedule(initial_critic_lr, self.lr_final)
        for group, update in self.groups.items():
            optimizers = [(update.actor_step.optimizer, actor_lr)]
            optimizers += [(optimizer, critic_lr) for optimizer in self.experiment.optimizers[group].values()]
            for optimizer, lr in optimizers:
                for param_group in optimizer.param_groups:
                    param_group["lr"] = lr
        return {f"train/{group}/actor_lr": actor_lr for group in self.groups}

    def training_state_dict(self) -> dict[str, Any]:
        """What BenchMARL's checkpoint lacks: the window update's state, the critic optimisers, the skip counts."""
        return {
            "algorithm": type(self).__name__.lower(),
            "window_update": self.update.state_dict(),
            "skipped_critic_steps": dict(self.skipped_critic_steps),
            "critic_optimizers": {
                group: {name: optimizer.state_dict() for name, optimizer in optimizers.items()}
                for group, optimizers in self.experiment.optimizers.items()
            },
        }

    def load_training_state_dict(self, state: dict[str, Any]) -> None:
        self.update.load_state_dict(state["window_update"])
        self.skipped_critic_steps.update(state["skipped_critic_steps"])
        for group, optimizers in self.experiment.optimizers.items():
            for name, optimizer in optimizers.items():
                load_state_keeping_rates(optimizer, state["critic_optimizers"][group][name])


class _Hooks(Callback):
    """Forwards BenchMARL's callback hooks to the algorithm (callbacks are BenchMARL's only per-collection seam)."""

    def __init__(self, algorithm: Shac) -> None:
        super().__init__()
        self.algorithm = algorithm

    def on_setup(self) -> None:
        self.algorithm.on_setup()

    def on_batch_collected(self, batch: TensorDictBase) -> None:
        self.algorithm.on_batch_collected(batch)

    def on_state_dict(self, state_dict: Dict[str, Any]) -> None:
        state_dict[STATE_KEY] = self.algorithm.training_state_dict()

    def on_load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.algorithm.load_training_state_dict(state_dict[STATE_KEY])


@dataclass
class ShacConfig(AlgorithmConfig):
    """Configuration of :class:`Shac`; the defaults are the paper's, and the only ones (``algorithm/shac.yaml``
    takes them from here)."""

    lmbda: float = 0.95
    action_std: float = 1.0
    learn_std: bool = False
    action_std_final: Optional[float] = None
    clamp_actions: bool = True
    deterministic_clamped_mean: bool = False
    action_bound_coef: float = 1.0
    action_mean_coef: float = 0.0
    action_mean_relative: bool = False
    action_mean_gate: float = 0.0
    action_mean_coef_final: Optional[float] = None
    actor_lr: float = 1e-3
    critic_lr: Optional[float] = 1e-3
    actor_max_grad_norm: float = 1.0
    actor_skip_grad_norm: Optional[float] = None
    actor_max_mean_change: Optional[float] = None
    lr_schedule: str = "constant"
    lr_final: Optional[float] = None
    window_length: Optional[int] = 32
    share_param_critic: bool = True
    critic_centralised: bool = True
    critic_slots: Optional[List[int]] = None
    use_target_critic: bool = True
    actor_value_gradient: float = 1.0
    critic_reward: Optional[str] = None
    actor_likelihood_ratio: float = 0.0
    actor_likelihood_ratio_steps: int = 0
    actor_likelihood_ratio_lr: float = 3e-4
    actor_likelihood_ratio_collections: int = 1

    def __post_init__(self) -> None:
        validation.check_algorithm_config(self)

    @staticmethod
    def associated_class() -> Type[Algorithm]:
        return Shac

    @classmethod
    def get_from_yaml(cls, path: Optional[str] = None) -> AlgorithmConfig:
        """The defaults (the package's yaml holds none of its own); ``path``: a yaml of overrides."""
        return cls(**(_yaml_algorithm_block(path) if path else {}))

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


def _yaml_algorithm_block(path: str) -> dict[str, Any]:
    """The algorithm settings of a yaml file: its ``algorithm:`` block (a global-package file like ours) or all of
    it."""
    config = read_config(path)
    return config.get("algorithm", config)
