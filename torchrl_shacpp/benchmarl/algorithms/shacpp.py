"""SHAC++ as a BenchMARL algorithm (``algorithm=shacpp``): policy gradients through learned world and reward models."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple, Type

from benchmarl.algorithms.common import Algorithm
from tensordict.nn import TensorDictModule
from torchrl.objectives import SoftUpdate

from torchrl_shacpp.benchmarl import networks
from torchrl_shacpp.benchmarl.algorithms.shacp import Shacp, ShacpConfig
from torchrl_shacpp.benchmarl.envs import world_periodic_features
from torchrl_shacpp.objectives import TDLambdaValueLoss, TransitionModelLoss, WorldModelLoss
from torchrl_shacpp.trainers import (
    GradientSource,
    LearnedModel,
    LearnedWorldGradient,
    reward_items,
    value_items,
    world_items,
)

#: The paper's window length h, which its cache sizes assume.
PAPER_WINDOW_LENGTH = 32


class Shacpp(Shacp):
    r"""SHAC++: policy gradients through learned world and reward models; the simulator needs no gradient.

    Collections come from BenchMARL's ordinary collector, without autograd; each window's actions get the policy's
    reparameterisation graph back, and a learned world model carries it to the reward model and the critic
    (:class:`~torchrl_shacpp.trainers.LearnedWorldGradient`); one actor step per window, and ``actor_replay_steps``
    more on replayed windows. Two world models (``world_rollout``):

    * ``"spliced"`` (default): a one-step :class:`~torchrl_shacpp.modules.TransitionWorldModel`
      :math:`\hat o_{t+1} = o_t + \Delta_\theta(o_t, a_t)`, trained by teacher forcing on uniformly sampled cached
      transitions; the actor chains its Jacobians along the real rollout, whose values it keeps
      (:func:`~torchrl_shacpp.modules.spliced_world_model`), so the reward model and the critic score real
      observations and every episode segment of a window counts. Its action Jacobian agrees with VMAS's at cosine
      0.97-1.00 on transport, dispersion and navigation, the paper's at 0.34-0.60
      (``benchmarks/results/shacpp_gradient_alignment.md``).
    * ``"one_pass"``: the paper's axis-attention world model (:class:`~torchrl_shacpp.modules.AxisAttentionWorldModel`)
      predicts the window's observations in one pass from its real first observation and the actions, cached as
      whole windows; the reward model and the critic score the predictions; a reset inside a window ends its credit.

    Both have the ``world_*`` sizes (paper: 3 layers, hidden 64, feed-forward 128, 1 head). The models train from
    their caches on the cool-down schedule of :class:`Shacp`. The critic trains like SHAC's, in BenchMARL's
    loop on every collection; with ``critic_from_cache`` it trains as the authors', from its own cache
    (``cache_size`` λ-targets in ``value_bins`` bins) on the cool-down (BenchMARL's optimiser loop then only evaluates
    it, logged as ``loss_value``, while the cool-down logs ``loss_value_cache``). On dispersion n=1 the critic of
    BenchMARL's loop solved the task in fewer frames at half the wall time (``benchmarks/results/dispersion/``).
    Works on any BenchMARL task with continuous actions. Also logged per group: ``loss_world``,
    ``skipped_world_steps``.

    Args:
        world_cache_size: spliced: transitions in the world cache (default ``cache_size``); one-pass: windows (default:
            as many steps as ``cache_size`` windows of the paper's 32 steps).
        world_bins: return bins of the one-pass world cache (paper: 25); the spliced model's cache is uniform.
        world_model_steps: minibatches per training of the spliced world model instead of the cool-down's
            ``model_epochs`` passes or ``model_steps`` (``None``: those, as the paper's; the one-pass model trains on
            the paper's ``model_epochs`` passes, cut only by ``world_model_max_steps``: its minibatches are up to
            1,000 windows of 32 steps, and on 300 of them per training from the first, SHAC++ one-pass on sampling
            n=3 took 310 s per cool-down at its 60th window,
            ``benchmarks/results/learning_vs_mappo/sampling_n3/README.md``). The default 300 is the paper's
            budget once its cache is full (10 passes over 30,000 transitions in minibatches of 1,000), given from the
            first training on, where the paper's passes over the small early cache are a few dozen minibatches: after
            20k frames the world model has taken 2,400 steps instead of 960. At the paper's scale (512 envs) the cache
            is full before the first training, and the two coincide. On balance (the line centred) the actor leaves the
            initial dropped-package plateau sooner (``benchmarks/results/learning_vs_mappo/balance_centred/``). The
            cool-down's other models (the reward model; with its option the cached critic) train on 300 minibatches per
            training by default too (``model_steps``; ``None``: the paper's passes, as SHAC+'s): with the replayed actor
            steps SHAC++ then solved dispersion n=1 after 46k ± 10k frames against 80k ± 12k, and the reward model,
            fitting navigation's goal shaping beside its rare collision penalties, stops SHAC++ unlearning navigation
            (``benchmarks/results/navigation_reward_model.md``).
        world_minibatch_size: the world model's minibatch size, in windows (one-pass) or transitions (spliced);
            ``None``: ``model_minibatch_size`` (paper: 1,000 items, which the one-pass model reads as windows: while
            its cache holds fewer than that, every step is a pass over all of it). On sampling n=3 the one-pass
            model in minibatches of 100 windows (10x the Adam steps per pass, at about the same cost) read 7.00 ±
            2.53 at 41k frames against the default's 4.15 ± 0.27 (6 and 7 seeds, rank test p = 0.10), level with it
            after and with MAPPO throughout; with ``model_epochs=30`` as well (``+preset=sampling_n3_shacpp`` without
            its ``world_model_max_steps``) it read 16.19 ± 3.53 at 61k frames against MAPPO's 9.09 ± 4.20, ahead
            there (8 seeds against 8, p = 0.005) and in mean from 31k
            (``benchmarks/results/learning_vs_mappo/sampling_n3/README.md``).
        world_model_first_epochs: one-pass: the world model's passes in each of its first trainings, one entry each,
            instead of ``model_epochs`` (empty: none). On sampling n=3, 3x the paper's passes in every training
            (``model_epochs=30``) brought the one-pass model's rise from 61-92k frames to 31-51k on 5 of 6 seeds, at
            1.5x the wall time per frame; 30 passes in the first 10 trainings only (to 26k frames) did not: on the
            same seeds, identical up to then, 5.57 / 4.47 at 41k against 9.76 / 8.70
            (``benchmarks/results/learning_vs_mappo/sampling_n3/README.md``).
        world_model_max_steps: one-pass: at most this many minibatches per training of the world model, its passes
            cut short once the cache has grown past them (``None``: the passes, whatever they cost). The passes' cost
            grows with the cache, so that on sampling n=3 with 3x the paper's passes the world model's training
            took 80% of a 30-minute run, which ended at 61-64k frames; cut at 150 (``+preset=sampling_n3_shacpp``)
            the runs reach 123-128k frames (8 seeds), level with the uncut training at 31-61k and ahead of MAPPO at
            51k, 82k and 102k by the exact rank test, in mean from 31k to 122k
            (``benchmarks/results/learning_vs_mappo/sampling_n3/README.md``).
        value_bins: λ-target bins of the critic's cache (paper: 9).
        world_num_layers, world_hidden_size, world_feedforward_size, world_num_heads: world model sizes.
        world_checkpoint_chunks: recompute the world model's layers in backward, this many batch slices at a time
            (0: off); exact, for many agents (``benchmarks/results/world_model_scaling.md``).
        critic_from_cache: train the critic from its cache on the cool-down, as the authors do, not in BenchMARL's loop.
        world_rollout: ``"one_pass"`` (the paper's: the window predicted from its first observation, cached as
            ``world_cache_size`` windows in ``world_bins`` return bins) or ``"spliced"`` (a one-step transition model
            trained on ``world_cache_size`` transitions, default ``cache_size``, sampled uniformly, whose
            Jacobians the actor chains along the real rollout: :func:`~torchrl_shacpp.modules.spliced_world_model`).
        actor_replay_steps: more actor steps per collected window, each on one of the last ``actor_replay_windows``
            windows, re-attached to the current policy, once the models have trained
            (:class:`~torchrl_shacpp.trainers.WindowUpdate`; paper: 0). The default 3 solved dispersion n=1 after
            80k ± 12k frames over 10 seeds, against 102k ± 22k with none and MAPPO's 97k ± 23k; four passes over the
            window just collected were slower: replayed windows add other states and action noise, so the steps'
            common direction adds up and their noise partly cancels
            (``benchmarks/results/learning_vs_mappo/dispersion_n1_seeds/``).
        actor_replay_windows: how many of the last collected windows the replayed steps draw from.
        actor_grad_outlier_ratio: bound every agent-step's action gradient to this multiple of the window's median
            one before it reaches the policy, or ``None`` (paper) for none
            (:func:`~torchrl_shacpp.optim.bound_outlier_gradients`).
        world_gradient_growth: spliced: the most each step back along the chain of the world model's state Jacobians
            may grow the state's gradient, per environment, or ``None`` for no bound
            (:func:`~torchrl_shacpp.modules.spliced_world_model`'s ``max_gradient_growth``).
        world_periodic_features: spliced: ``[[index, period], ...]``, the observation features that are angles
            observed modulo a period, which the transition model reads as their phase's cosine and sine and whose
            change it learns across the cut (:class:`~torchrl_shacpp.modules.PeriodicFeatures`); ``None`` (default):
            the task's, VMAS's balance and wheel observing their line's rotation modulo π
            (:func:`~torchrl_shacpp.benchmarl.envs.periodic_observation_features`); ``[]``: none. On balance they
            take SHAC++ from not learning to a return of 40 after 44k ± 5k frames, MAPPO's 92k ± 14k
            (``benchmarks/results/learning_vs_mappo/balance/``); on wheel, whose reward reads the speed error, SHAC++
            stays level with its return before them (2 seeds, ``.../other_tasks/``).
        actor_world_gradient: the weight (>= 0) of the gradient through the world model's predicted observations to
            the actions in the actor's, the objective unchanged (paper: 1; :class:`~torchrl_shacpp.objectives.SHACActorLoss`'s
            ``world_gradient``): above 1 it raises the model's action Jacobian beside the reward model's own action
            term and the critic's bootstrap.
        world_detached_features: spliced: the observation features whose predicted values carry no gradient to the
            actions, as indices or ``"integer"`` (those whose values in the window are all integers: flags, counts),
            or ``None`` (:func:`~torchrl_shacpp.modules.spliced_world_model`'s ``detached_features``).
        world_trusted_error_ratio: spliced: the agent-steps whose one-step prediction error exceeds this multiple of
            the window's median pass no gradient, leaving them to the reward model's direct term and the likelihood
            ratio, or ``None`` (default) to keep every one (:func:`~torchrl_shacpp.modules.spliced_world_model`'s
            ``trusted_error_ratio``).
        **kwargs: see :class:`Shacp` and :class:`Shac`. With ``use_target_critic`` a cache-trained critic takes one
            Polyak step (``experiment.polyak_tau``) after each cool-down training.
    """

    simulator_graph = False

    def __init__(
        self,
        world_cache_size: Optional[int],
        world_bins: int,
        world_model_steps: Optional[int],
        world_minibatch_size: Optional[int],
        world_model_first_epochs: List[int],
        world_model_max_steps: Optional[int],
        value_bins: int,
        world_num_layers: int,
        world_hidden_size: int,
        world_feedforward_size: int,
        world_num_heads: int,
        world_checkpoint_chunks: int,
        critic_from_cache: bool,
        world_rollout: str,
        actor_replay_steps: int,
        actor_replay_windows: int,
        actor_grad_outlier_ratio: Optional[float],
        world_gradient_growth: Optional[float],
        world_detached_features: Any,
        world_trusted_error_ratio: Optional[float],
        actor_world_gradient: float,
        world_periodic_features: Any,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.world_periodic_features = world_periodic_features
        self.actor_world_gradient = actor_world_gradient
        self.world_detached_features = world_detached_features
        self.world_trusted_error_ratio = world_trusted_error_ratio
        self.world_gradient_growth = world_gradient_growth
        self.actor_grad_outlier_ratio = actor_grad_outlier_ratio
        self.actor_replay_steps = actor_replay_steps
        self.actor_replay_windows = actor_replay_windows
        self.world_rollout = world_rollout
        self.world_cache_size = world_cache_size
        self.world_bins = world_bins
        self.world_model_steps = world_model_steps
        self.world_minibatch_size = world_minibatch_size
        self.world_model_first_epochs = world_model_first_epochs
        self.world_model_max_steps = world_model_max_steps
        self.value_bins = value_bins
        self.world_sizes = dict(
            num_layers=world_num_layers,
            hidden_size=world_hidden_size,
            feedforward_size=world_feedforward_size,
            num_heads=world_num_heads,
            checkpoint_chunks=world_checkpoint_chunks,
        )
        self.critic_from_cache = critic_from_cache

    @property
    def periodic_features(self) -> list[list[float]]:
        """The spliced transition model's angle features: ``world_periodic_features``, or with ``None`` the task's;
        none for the one-pass model."""
        return world_periodic_features(self.experiment.task, self.world_rollout, self.world_periodic_features)

    @property
    def world_horizon(self) -> int:
        """The length of the windows the world model predicts: ``window_length``, or the whole collection."""
        return min(self.window_length or self.collection_length, self.collection_length)

    def gradient_source(self, group: str, policy: TensorDictModule) -> GradientSource:
        reward_loss = self.reward_loss(group)
        if self.world_rollout == "spliced":
            world, actor_world_model = self._spliced_world(group)
        else:
            world, actor_world_model = self._one_pass_world(group)
        return LearnedWorldGradient(
            world, self.reward_model(group, reward_loss), policy,
            action_key=(group, "action"), loc_key=(group, "loc"), scale_key=(group, "scale"),
            log_prob_key=(group, "sample_log_prob") if self.actor_likelihood_ratio else None,
            actor_world_model=actor_world_model, action_grad_outlier_ratio=self.actor_grad_outlier_ratio,
        )  # fmt: skip

    def _one_pass_world(self, group: str) -> tuple[LearnedModel, TensorDictModule]:
        """The paper's world model, trained on whole windows from its cache of ``world_cache_size`` windows, on the
        paper's ``model_epochs`` passes whatever ``model_steps`` gives the other models (a minibatch of up to
        ``model_minibatch_size`` windows costs 32 times one of transitions), or ``world_model_first_epochs`` in its
        first trainings, each cut at ``world_model_max_steps`` minibatches."""
        loss = WorldModelLoss(networks.world_model(self, group, self.world_horizon, **self.world_sizes))
        loss.set_keys(observation=(group, "observation"))
        capacity = self.world_cache_size
        if capacity is None:  # as many steps as the paper's cache_size windows of 32 steps
            capacity = max(self.world_bins, self.cache_size * PAPER_WINDOW_LENGTH // self.world_horizon)
        items = functools.partial(world_items, **self.transition_keys(group))
        world = self.learned_model(
            "world", loss, capacity, self.world_bins, "score", items, window_length=self.world_horizon,
            epochs_only=True, first_epochs=self.world_model_first_epochs, max_steps=self.world_model_max_steps,
            minibatch_size=self.world_minibatch_size,
        )
        return world, loss.world_model

    def _spliced_world(self, group: str) -> tuple[LearnedModel, TensorDictModule]:
        """A transition model trained on ``world_cache_size`` transitions (default ``cache_size``) sampled
        uniformly, differentiated along the real rollout. Stratified by reward, its Jacobian agreed with VMAS's
        at cosine 0.56 after 10 epochs on transport, against 1.00 uniformly
        (``benchmarks/results/shacpp_gradient_alignment.md``)."""
        teacher_forced, spliced = networks.transition_world_models(self, group, **self.world_sizes)
        loss = TransitionModelLoss(teacher_forced, periodic=teacher_forced.module.periodic)
        loss.set_keys(observation=(group, "observation"), predicted_observation=(group, "predicted_observation"))
        keys = self.transition_keys(group)
        world = self.learned_model(
            "world", loss, self.world_cache_size or self.cache_size, 1, ("next", *keys["reward_key"]),
            functools.partial(reward_items, **keys), steps=self.world_model_steps,
            minibatch_size=self.world_minibatch_size,
        )  # fmt: skip
        return world, spliced

    def _get_loss(self, group: str, policy_for_loss: TensorDictModule, continuous: bool) -> Tuple[TDLambdaValueLoss, bool]:
        value, use_target = super()._get_loss(group, policy_for_loss, continuous)
        if not self.critic_from_cache:
            return value, use_target
        items = functools.partial(
            value_items, observation_key=(group, "observation"), value_target_key=(group, "value_target")
        )
        update = self.groups[group]
        update.value_model = self.learned_model(
            "value_cache", value, self.cache_size, self.value_bins, (group, "value_target"), items
        )
        if self.use_target_critic:
            update.target_updater = SoftUpdate(value, tau=self.experiment_config.polyak_tau)
        return value, False  # BenchMARL neither steps this critic nor its target

    def _get_parameters(self, group: str, loss: TDLambdaValueLoss) -> Dict[str, Iterable]:
        return {} if self.critic_from_cache else super()._get_parameters(group, loss)


@dataclass
class ShacppConfig(ShacpConfig):
    """Configuration of :class:`Shacpp` (``algorithm/shacpp.yaml`` takes its defaults from here)."""

    use_target_critic: bool = False
    world_cache_size: Optional[int] = None
    world_bins: int = 25
    world_model_steps: Optional[int] = 300
    world_minibatch_size: Optional[int] = None
    world_model_first_epochs: List[int] = field(default_factory=list)
    world_model_max_steps: Optional[int] = None
    model_steps: Optional[int] = 300
    value_bins: int = 9
    world_num_layers: int = 3
    world_hidden_size: int = 64
    world_feedforward_size: int = 128
    world_num_heads: int = 1
    world_checkpoint_chunks: int = 0
    critic_from_cache: bool = False
    world_rollout: str = "spliced"
    actor_replay_steps: int = 3
    actor_replay_windows: int = 32
    actor_grad_outlier_ratio: Optional[float] = None
    world_gradient_growth: Optional[float] = None
    #: ``None``, ``"integer"`` or a list of feature indices (a union OmegaConf's typed fields cannot hold).
    world_detached_features: Any = None
    world_trusted_error_ratio: Optional[float] = None
    actor_world_gradient: float = 1.0
    #: ``None`` or ``[[index, period], ...]`` (a nesting OmegaConf's typed fields cannot hold).
    world_periodic_features: Any = None

    @staticmethod
    def associated_class() -> Type[Algorithm]:
        return Shacpp
