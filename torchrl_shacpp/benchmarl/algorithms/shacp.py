"""SHAC+ as a BenchMARL algorithm (``algorithm=shacp``): SHAC whose reward is a learned model."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import List, Optional, Type

import torch
from benchmarl.algorithms.common import Algorithm
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule

from torchrl_shacpp.benchmarl import networks
from torchrl_shacpp.benchmarl.algorithms.shac import Shac, ShacConfig
from torchrl_shacpp.benchmarl.envs import rewards_are_each_agents_own
from torchrl_shacpp.data import make_stratified_cache
from torchrl_shacpp.objectives import RewardModelLoss
from torchrl_shacpp.trainers import CoolDown, GradientSource, LearnedModel, LearnedRewardGradient, reward_items


class Shacp(Shac):
    r"""SHAC+: SHAC whose reward is a learned model :math:`R_\theta(o_t, a_t)` on the simulator's observations.

    For tasks whose reward has no gradient (dispersion, discovery): the actor's gradient flows through the reward
    model and the simulator's dynamics (:class:`~torchrl_shacpp.trainers.LearnedRewardGradient`). The reward model (a
    ``critic_model`` network over all agents' transitions) regresses the environment's rewards from a
    return-stratified cache of ``cache_size`` transitions in ``reward_bins`` bins, trained every
    ``model_train_every`` windows for ``model_epochs`` passes of ``model_minibatch_size`` (Adam at ``model_lr``, no
    clipping). Everything else is :class:`Shac`. Also logged per group: ``loss_reward`` at each model training and
    ``skipped_reward_steps``; ``timers/model_training_time``.

    SHAC+ and SHAC++ learn with Adam at 3e-3 (the actor, the critic and the models; paper: 1e-3), which solved
    dispersion n=1 in windows of 8 envs after 92-113k frames against 123-143k at 1e-3
    (``benchmarks/results/dispersion/``).

    Args:
        reward_uses_next_observation: the reward model reads :math:`o_{t+1}` too. The authors' reads
            :math:`(o_t, a_t)`: one that reads :math:`o_{t+1}` can read a sparse reward off the event it causes
            (dispersion's "eaten" flags) and give the actor no gradient towards the event.
        reward_observation_noise: the standard deviation of the Gaussian noise added to the observations the reward
            model trains on (paper: 0), which smooths a sparse reward into a slope towards it
            (:class:`~torchrl_shacpp.objectives.RewardModelLoss`).
        reward_centralised: ``True``: the reward model reads every agent's transition, as the paper's transformer
            does (an MLP ``critic_model`` with ``share_param_critic`` then gives one pooled reward for all agents);
            ``False``: each agent's reward from its own transition, one network for all agents with
            ``share_param_critic``; ``None``: ``False`` where the task declares each agent's reward its own and has
            more than one agent (VMAS's ``shared_rew``, ``shared_reward`` or ``share_reward`` false: navigation,
            sampling, the paper's dispersion; :func:`~torchrl_shacpp.benchmarl.envs.rewards_are_each_agents_own`),
            ``True`` otherwise. On navigation the pooled model learns neither the goal shaping nor to steer the
            agents apart, and the per-agent one learns both (``benchmarks/results/navigation_reward_model.md``);
            where the rewards are the team's, an agent's own transition does not hold what the others cause.
        reward_slots: ``[own_features, slot_features]``: the reward model is each agent's sum over the entity slots
            of its observation, one network scoring every slot (:class:`~torchrl_shacpp.modules.SlotSumReward`:
            ``own_features`` of the agent's own state first, then slots of ``slot_features``; dispersion: ``[4, 3]``,
            position and velocity, then each food's offset and eaten flag). ``None``: the ``critic_model`` network on
            the whole transition. A reward per agent (``reward_centralised`` false or ``None`` on such a task).
        reward_huber_delta: the reward model's loss is Huber's at this residual, in reward units (``None``: the
            paper's squared error). For a dense shaping beside rare large penalties (navigation:
            ``benchmarks/results/navigation_reward_model.md``).
        cache_size: transitions in each model cache (paper: 30,000).
        reward_bins: score bins of the reward cache (paper: 9).
        reward_uniform_share: the share of the reward cache kept for random replacement, outside the bins (paper:
            0). The bins give a common reward the share of one bin: on dense, skewed rewards (wheel, navigation's
            rare collision penalty) the model then fits worst where the policy is
            (``benchmarks/results/shacpp_gradient_alignment.md``).
        model_train_every: train the learned models every this many windows (paper: 10).
        model_epochs: passes over each cache per training (paper: 10).
        model_steps: minibatches per model per training instead of ``model_epochs`` passes, a cost that does not
            grow with the caches (``None``: the paper's passes).
        model_first_steps: minibatches per model of each of the first trainings, instead of ``model_epochs`` passes
            or ``model_steps`` (empty: none; ``[1000, 1000, 1000]``: the first three trainings take 1,000 each).
        model_surprise_steps: minibatches of a later training of a model whose surprise reaches
            ``model_surprise_ratio``: its mean loss on the windows collected since its last training, measured before
            it trained on them, over that training's mean loss (``None``: no such budget; logged as
            ``surprise_<model>`` either way). For the models on ``model_steps`` (SHAC++'s spliced world model keeps
            ``world_model_steps``, its one-pass world model the paper's passes).
        model_surprise_ratio: the surprise that calls for ``model_surprise_steps``.
        model_minibatch_size: model minibatch size (paper: 1,000).
        model_lr: the learned models' Adam learning rate (paper: 1e-3).
        actor_waits_for_models: the actor takes its first step after the models' first training (the paper's actor
            steps from the first window, along a random reward model's gradient).
        **kwargs: see :class:`Shac`.
    """

    def __init__(
        self,
        reward_uses_next_observation: bool,
        reward_observation_noise: float,
        reward_centralised: Optional[bool],
        reward_slots: Optional[List[int]],
        reward_huber_delta: Optional[float],
        cache_size: int,
        reward_bins: int,
        reward_uniform_share: float,
        model_train_every: int,
        model_epochs: int,
        model_steps: Optional[int],
        model_first_steps: List[int],
        model_surprise_steps: Optional[int],
        model_surprise_ratio: float,
        model_minibatch_size: int,
        model_lr: float,
        actor_waits_for_models: bool,
        **kwargs,
    ) -> None:
        # Read by the set-up checks that Shac's __init__ runs (reward_is_centralised).
        self.reward_centralised = reward_centralised
        super().__init__(**kwargs)
        self.reward_uses_next_observation = reward_uses_next_observation
        self.reward_observation_noise = reward_observation_noise
        self.reward_slots = reward_slots
        self.reward_huber_delta = reward_huber_delta
        self.cache_size = cache_size
        self.reward_bins = reward_bins
        self.reward_uniform_share = reward_uniform_share
        self.model_train_every = model_train_every
        self.model_epochs = model_epochs
        self.model_steps = model_steps
        self.model_first_steps = model_first_steps
        self.model_surprise_steps = model_surprise_steps
        self.model_surprise_ratio = model_surprise_ratio
        self.model_minibatch_size = model_minibatch_size
        self.model_lr = model_lr
        self.actor_waits_for_models = actor_waits_for_models
        self._caches_made = 0

    @staticmethod
    def _needs_differentiable_reward() -> bool:
        return False

    def cooldown(self) -> CoolDown:
        return CoolDown(
            every=self.model_train_every, epochs=self.model_epochs, steps=self.model_steps,
            first_steps=tuple(self.model_first_steps), surprise_steps=self.model_surprise_steps,
            surprise_ratio=self.model_surprise_ratio,
        )  # fmt: skip

    def learned_model(
        self, name: str, loss: LossModule, capacity: int, bins: int, score_key: NestedKey, items,
        uniform_share: float = 0.0, minibatch_size: Optional[int] = None, **kwargs,
    ) -> LearnedModel:
        """A model trained with Adam (``model_lr``) from a stratified cache of ``capacity`` items in ``bins`` bins
        (``uniform_share`` of it random replacement), in minibatches of ``minibatch_size`` (default
        ``model_minibatch_size``); the cache has its own random generator, which checkpoints save and restore with
        it."""
        if capacity < bins:
            raise ValueError(f"The {name} cache of {capacity} items cannot hold {bins} bins; raise its size.")
        self._caches_made += 1
        generator = torch.Generator(device=self.device).manual_seed(self.experiment.seed * 1000 + self._caches_made)
        cache = make_stratified_cache(
            capacity, bins, score_key=score_key, uniform_share=uniform_share,
            batch_size=minibatch_size or self.model_minibatch_size,
            device=self.device, generator=generator,
        )  # fmt: skip
        adam = dict(eps=self.experiment_config.adam_eps, **self.experiment_config.adam_extra_kwargs)
        return LearnedModel(name, loss, cache, items, lr=self.model_lr, **kwargs, **adam)

    @staticmethod
    def transition_keys(group: str) -> dict[str, tuple[str, str]]:
        return dict(observation_key=(group, "observation"), action_key=(group, "action"), reward_key=(group, "reward"))

    def reward_is_centralised(self, group: str) -> bool:
        """Whether the group's reward model reads every agent's transition (``reward_centralised``, or with ``None``
        the task's declared rewards: see the class)."""
        if self.reward_centralised is not None:
            return self.reward_centralised
        return networks.group_shape(self, group)[0] == 1 or not rewards_are_each_agents_own(self.experiment.task)

    def reward_loss(self, group: str) -> RewardModelLoss:
        """The loss of the group's reward model (a ``critic_model`` network)."""
        network = networks.reward_model(
            self, group, uses_next_observation=self.reward_uses_next_observation, share_params=self.share_param_critic,
            centralised=self.reward_is_centralised(group), slots=self.reward_slots,
        )
        loss = RewardModelLoss(
            network, huber_delta=self.reward_huber_delta, observation_noise=self.reward_observation_noise
        )
        loss.set_keys(
            reward=(group, "reward"), predicted_reward=(group, "predicted_reward"), observation=(group, "observation")
        )
        return loss

    def reward_model(self, group: str, loss: RewardModelLoss) -> LearnedModel:
        """The group's reward model trained from its cache."""
        items = functools.partial(reward_items, **self.transition_keys(group))
        return self.learned_model(
            "reward", loss, self.cache_size, self.reward_bins, ("next", group, "reward"), items,
            uniform_share=self.reward_uniform_share,
        )  # fmt: skip

    def gradient_source(self, group: str, policy: TensorDictModule) -> GradientSource:
        return LearnedRewardGradient(self.reward_model(group, self.reward_loss(group)))


@dataclass
class ShacpConfig(ShacConfig):
    """Configuration of :class:`Shacp` (``algorithm/shacp.yaml`` takes its defaults from here)."""

    actor_lr: float = 3e-3
    critic_lr: Optional[float] = 3e-3
    reward_uses_next_observation: bool = False
    reward_observation_noise: float = 0.0
    reward_centralised: Optional[bool] = None
    reward_slots: Optional[List[int]] = None
    reward_huber_delta: Optional[float] = None
    cache_size: int = 30_000
    reward_bins: int = 9
    reward_uniform_share: float = 0.0
    model_train_every: int = 10
    model_epochs: int = 10
    model_steps: Optional[int] = None
    model_first_steps: List[int] = field(default_factory=list)
    model_surprise_steps: Optional[int] = None
    model_surprise_ratio: float = 3.0
    model_minibatch_size: int = 1000
    model_lr: float = 3e-3
    actor_waits_for_models: bool = False

    @staticmethod
    def associated_class() -> Type[Algorithm]:
        return Shacp
