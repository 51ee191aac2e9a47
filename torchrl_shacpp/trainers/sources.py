r"""Where the actor's gradient comes from: the simulator, a learned reward on it, or learned world and reward models.

The SHAC window objective (:class:`~torchrl_shacpp.objectives.SHACActorLoss`) is the same for the three algorithms;
what differs is what carries its gradient (DESIGN §2, step 2):

=========  ===================================  ==========================================  ======================
algorithm  source                               rewards :math:`\tilde r` and observations   the window carries
=========  ===================================  ==========================================  ======================
SHAC       :class:`SimulatorGradient`           the simulator's                             the simulator's graph
SHAC+      :class:`LearnedRewardGradient`       :math:`R_\theta(o, a)` on the simulator's   the simulator's graph
SHAC++     :class:`LearnedWorldGradient`        :math:`R_\theta(\hat o, a)`, :math:`\hat o   the policy's graph
                                                = F_\theta(o_0, a)`                          (re-attached)
=========  ===================================  ==========================================  ======================

A source tells the window update whether the collection must keep the simulator's graph, turns a collected window
into the one the actor loss differentiates, and lists the models it learns (trained on the cool-down).
"""

from __future__ import annotations

from tensordict import TensorDictBase
from tensordict.nn import ProbabilisticTensorDictSequential, TensorDictModuleBase
from tensordict.utils import NestedKey

from torchrl_shacpp.checks import check_positive
from torchrl_shacpp.collectors import attach_policy_graph
from torchrl_shacpp.optim import bound_outlier_gradients
from torchrl_shacpp.trainers.learned import LearnedModel


class GradientSource:
    """What carries the actor's gradient, and what it learns to give it.

    Attributes:
        simulator_graph: whether the collected window carries the simulator's autograd graph.
        models: the models this source learns, trained from their caches on the cool-down.
    """

    simulator_graph: bool = True

    def __init__(self, models: list[LearnedModel] | None = None) -> None:
        self.models = list(models or [])

    @property
    def reward_model(self) -> TensorDictModuleBase | None:
        """The reward model the actor loss reads rewards from (``None``: the window's own rewards)."""
        return None

    @property
    def world_model(self) -> TensorDictModuleBase | None:
        """The world model the actor loss predicts observations with (``None``: the window's own)."""
        return None

    def differentiable_window(self, window: TensorDictBase) -> TensorDictBase:
        """The window the actor loss differentiates, from a collected one (by default the collected one)."""
        return window


class SimulatorGradient(GradientSource):
    """SHAC: the window is differentiable through the simulator's rewards and dynamics (the reward must have a
    gradient w.r.t. the actions); nothing is learned besides the critic."""


class LearnedRewardGradient(GradientSource):
    r"""SHAC+: rewards :math:`R_\theta(o_t, a_t)` of a learned model on the simulator's observations, whose dynamics
    carry the gradient; for rewards without a gradient (dispersion, discovery).

    Args:
        reward: the reward model, its loss, cache and optimiser.
    """

    def __init__(self, reward: LearnedModel) -> None:
        super().__init__([reward])
        self.reward = reward

    @property
    def reward_model(self) -> TensorDictModuleBase:
        return self.reward.loss.reward_model


class LearnedWorldGradient(LearnedRewardGradient):
    r"""SHAC++: a learned world model predicts the window's observations from its first one and the actions, and the
    reward model scores the predictions; the simulator needs no gradient at all.

    The window is collected without autograd (any TorchRL collector); the policy's pathwise graph is re-attached to
    its actions (:func:`~torchrl_shacpp.collectors.attach_policy_graph`), so the gradient reaches the policy through
    the world model only.

    Args:
        world: the world model, its loss, cache and optimiser.
        reward: the reward model, its loss, cache and optimiser.
        actor: the Gaussian policy that collected the windows.

    Keyword Args:
        action_key, loc_key, scale_key: the action and the distribution parameters the actor writes.
        log_prob_key: where to write each collected action's log-probability under the policy that collected it
            (for the actor loss's likelihood ratio), or ``None``.
        actor_world_model: the window module the actor loss differentiates through, when it is not the world loss's
            own (the spliced variant: :func:`~torchrl_shacpp.modules.spliced_world_model` around the transition
            model that :class:`~torchrl_shacpp.objectives.TransitionModelLoss` trains). Defaults to the world loss's
            ``world_model``.
        action_grad_outlier_ratio: bound every agent-step's action gradient to this multiple of the window's median
            one before it reaches the policy (:func:`~torchrl_shacpp.optim.bound_outlier_gradients`), or ``None``.
    """

    simulator_graph = False

    def __init__(
        self,
        world: LearnedModel,
        reward: LearnedModel,
        actor: ProbabilisticTensorDictSequential,
        *,
        action_key: NestedKey,
        loc_key: NestedKey,
        scale_key: NestedKey,
        log_prob_key: NestedKey | None = None,
        actor_world_model: TensorDictModuleBase | None = None,
        action_grad_outlier_ratio: float | None = None,
    ) -> None:
        super().__init__(reward)
        if action_grad_outlier_ratio is not None:
            check_positive("action_grad_outlier_ratio", action_grad_outlier_ratio)
        self.action_grad_outlier_ratio = action_grad_outlier_ratio
        self.models.insert(0, world)
        self.world = world
        self.actor = actor
        self.keys = dict(action_key=action_key, loc_key=loc_key, scale_key=scale_key, log_prob_key=log_prob_key)
        self._world_model = actor_world_model if actor_world_model is not None else world.loss.world_model

    @property
    def world_model(self) -> TensorDictModuleBase:
        return self._world_model

    def differentiable_window(self, window: TensorDictBase) -> TensorDictBase:
        window = attach_policy_graph(window, self.actor, **self.keys)
        if self.action_grad_outlier_ratio is not None:
            bound_outlier_gradients(window.get(self.keys["action_key"]), self.action_grad_outlier_ratio)
        return window
