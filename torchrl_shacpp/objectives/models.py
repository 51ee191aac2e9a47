"""Supervised losses of the learned reward and world models (SHAC+, SHAC++)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey, unravel_key
from torchrl.objectives import LossModule
from torchrl.objectives.utils import distance_loss

from torchrl_shacpp.checks import check_non_negative, check_positive
from torchrl_shacpp.objectives.utils import check_window, expand_like

if TYPE_CHECKING:
    from torchrl_shacpp.modules import PeriodicFeatures


def alive_mask(done: torch.Tensor, time_dim: int) -> torch.Tensor:
    """``True`` at steps that no episode end precedes within the window (``done`` at an earlier step).

    A world model predicts the window in one pass from its first observation, so it cannot know of a reset
    inside the window: observations after the first episode end are not its targets, and SHAC++ gives them no
    credit. The step that ends the episode is alive (its next observation is the pre-reset one).
    """
    done = done.long()
    return (done.cumsum(time_dim) - done) == 0


def regression_loss(
    model: TensorDictModule, tensordict: TensorDictBase, prediction_key: NestedKey, target_key: NestedKey,
    loss_function: str, huber_delta: float | None = None, periodic: PeriodicFeatures | None = None,
) -> torch.Tensor:
    """The mean ``loss_function`` distance (Huber's loss at ``huber_delta`` if given) between ``model``'s output under
    ``prediction_key`` and the batch's ``("next", target_key)`` entry (the reward, or the next observation); with
    ``periodic`` features, between the target and the prediction's image nearest to it, whole periods away."""
    prediction = model(tensordict.select(*model.in_keys)).get(prediction_key)
    target = tensordict.get(("next", target_key))
    if periodic is not None:
        prediction = target + periodic.wrap(prediction - target)
    if huber_delta is not None:
        return torch.nn.functional.huber_loss(prediction, target, delta=huber_delta)
    return distance_loss(prediction, target, loss_function).mean()


class RewardModelLoss(LossModule):
    r"""Regresses a reward model onto the environment's rewards: :math:`\operatorname{mean} (R_\theta(o, a, o') - r)^2`.

    Works on any batch of transitions (flattened windows or samples of a reward cache).

    With ``huber_delta`` :math:`\delta` the loss is Huber's, :math:`\operatorname{mean} h_\delta(R_\theta - r)` with
    :math:`h_\delta(x) = x^2/2` for :math:`|x| \le \delta` and :math:`\delta(|x| - \delta/2)` beyond: each residual's
    pull on the model is clipped at :math:`\delta`. A dense shaping of a hundredth per step beside a rare penalty of
    -1 (navigation's collisions) is then fitted: under the squared error the penalty's residuals, a hundred times
    larger, drown the shaping's in the minibatch gradient, and a model trained for thousands of steps still does not
    follow it (``benchmarks/results/navigation_reward_model.md``). The rare large rewards are fitted towards their
    conditional median, not their mean.

    With ``observation_noise`` :math:`\sigma > 0` the model reads each observation it is given (:math:`o`, and
    :math:`o'` if it reads it) plus fresh noise :math:`\epsilon \sim \mathcal N(0, \sigma^2 I)` at every step, so
    it minimises :math:`\mathbb E_\epsilon (R_\theta(o + \epsilon, a) - r)^2`, whose minimiser is the reward
    smoothed by the noise, :math:`R^*(x, a) = \mathbb E[r \mid o + \epsilon = x, a]` (Bishop, 1995: training
    with noise is a Tikhonov regulariser). A sparse reward (dispersion's food, 0 everywhere but on it) becomes a bump
    of width about :math:`\sigma` around where it is earned, whose gradient points there from as far; the actor
    differentiates the model on clean observations. The noise is a training regulariser: in eval mode
    (``loss.eval()``) the loss is the model's error on the observations as given.

    Args:
        reward_model (TensorDictModule): reads observation, action and ``("next", observation)`` keys of a
            transition (any subset) and writes ``predicted_reward``.

    Keyword Args:
        loss_function (str): ``"l2"`` (paper), ``"l1"`` or ``"smooth_l1"``. Defaults to ``"l2"``.
        huber_delta (float, optional): :math:`\delta > 0`, in the reward's units: Huber's loss instead of
            ``loss_function``. Defaults to ``None`` (``loss_function``).
        observation_noise (float): :math:`\sigma`, in the observation's units; 0 (paper) reads them as they are.
            Defaults to 0.

    Returns (forward):
        a TensorDict with ``loss_reward``.
    """

    @dataclass
    class _AcceptedKeys:
        """Configurable tensordict keys (set them with :meth:`set_keys`).

        Attributes:
            reward: the environment reward under ``"next"``. Defaults to ``"reward"``.
            predicted_reward: the reward model's output key. Defaults to ``"predicted_reward"``.
            observation: the observation key (also read under ``"next"``) that ``observation_noise`` perturbs.
                Defaults to ``"observation"``.
        """

        reward: NestedKey = "reward"
        predicted_reward: NestedKey = "predicted_reward"
        observation: NestedKey = "observation"

    default_keys = _AcceptedKeys
    out_keys = ["loss_reward"]

    def __init__(
        self,
        reward_model: TensorDictModule,
        *,
        loss_function: str = "l2",
        huber_delta: float | None = None,
        observation_noise: float = 0.0,
    ) -> None:
        super().__init__()
        check_non_negative("observation_noise", observation_noise, "It is the noise's std; 0 turns it off.")
        if huber_delta is not None:
            check_positive("huber_delta", huber_delta, "It is where Huber's loss turns linear, in reward units.")
            if loss_function != "l2":
                raise ValueError(
                    f"huber_delta={huber_delta} replaces loss_function={loss_function!r}: pass one of them."
                )
        self.reward_model = reward_model
        self.loss_function = loss_function
        self.huber_delta = huber_delta
        self.observation_noise = observation_noise

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    def _with_noisy_observations(self, tensordict: TensorDictBase) -> TensorDictBase:
        """A shallow copy of ``tensordict`` whose observations that the model reads carry fresh Gaussian noise."""
        noisy = tensordict.copy()
        read = {unravel_key(key) for key in self.reward_model.in_keys}
        observation = self.tensor_keys.observation
        for key in (unravel_key(observation), unravel_key(("next", observation))):
            if key in read:
                value = tensordict.get(key)
                noisy.set(key, value + self.observation_noise * torch.randn_like(value))
        return noisy

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        keys = self.tensor_keys
        if self.observation_noise and self.training:
            tensordict = self._with_noisy_observations(tensordict)
        loss = regression_loss(
            self.reward_model, tensordict, keys.predicted_reward, keys.reward, self.loss_function, self.huber_delta
        )
        return TensorDict({"loss_reward": loss}, batch_size=[])


class WorldModelLoss(LossModule):
    r"""Regresses a one-pass world model onto the real observation sequences of ``[*B, T]`` windows.

    The world model reads the window's observations (it uses the first, :math:`o_0`) and its actions
    :math:`a_{0..T-1}`, and writes its predictions :math:`\hat o_{0..T-1}` and :math:`\hat o_{1..T}` under the
    observation key and ``("next", observation)`` of the tensordict it is given (a shallow copy here, so the real
    observations stay the targets). The loss is the mean squared error over every agent and every step that no
    episode end precedes in the window (:func:`alive_mask`):

    .. math::

        \mathcal{L}_F = \frac{1}{|\mathcal{A}|}\sum_{(t, i) \in \mathcal{A}}
        \tfrac12\big(\lVert \hat o_{t,i} - o_{t,i}\rVert^2 + \lVert \hat o_{t+1,i} - o_{t+1,i}\rVert^2\big) / d_o.

    Args:
        world_model (TensorDictModule): see above, e.g. :func:`~torchrl_shacpp.modules.window_world_model`.

    Keyword Args:
        loss_function (str): ``"l2"`` (paper), ``"l1"`` or ``"smooth_l1"``. Defaults to ``"l2"``.

    Returns (forward):
        a TensorDict with ``loss_world``.
    """

    @dataclass
    class _AcceptedKeys:
        """Configurable tensordict keys (set them with :meth:`set_keys`).

        Attributes:
            observation: the observation key (also read under ``"next"``). Defaults to ``"observation"``.
            done: the done key under ``"next"``. Defaults to ``"done"``.
        """

        observation: NestedKey = "observation"
        done: NestedKey = "done"

    default_keys = _AcceptedKeys
    out_keys = ["loss_world"]

    def __init__(self, world_model: TensorDictModule, *, loss_function: str = "l2") -> None:
        super().__init__()
        self.world_model = world_model
        self.loss_function = loss_function

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        time_dim = check_window(tensordict, type(self).__name__)
        keys = self.tensor_keys
        observation, next_observation = tensordict.get(keys.observation), tensordict.get(("next", keys.observation))
        predicted = self.world_model(tensordict.select(*self.world_model.in_keys))
        errors = distance_loss(predicted.get(keys.observation), observation, self.loss_function) + distance_loss(
            predicted.get(("next", keys.observation)), next_observation, self.loss_function
        )
        alive = expand_like(alive_mask(tensordict.get(("next", keys.done)), time_dim), errors[..., :1])
        loss = (errors * alive).sum() / (2 * alive.sum() * errors.shape[-1])
        return TensorDict({"loss_world": loss}, batch_size=[])


class TransitionModelLoss(LossModule):
    r"""Regresses a one-step transition model onto real transitions (teacher forcing):

    .. math::

        \mathcal{L}_T = \operatorname{mean}_{t, i, f}\big(T_\theta(o_t, a_t)_{i, f} - o'_{t, i, f}\big)^2,

    over every transition of the batch (flattened windows or samples of a transition cache). The next observation
    :math:`o'_t` at an episode end is the pre-reset one, so every transition is a target, including those after a
    reset inside a window. With ``periodic`` features (angles observed modulo a period :math:`P`) their residual is
    taken into :math:`[-P/2, P/2)` (:meth:`~torchrl_shacpp.modules.PeriodicFeatures.wrap`): a line that tilts across
    VMAS's cut at level changes by a little, not by :math:`\pm\pi`.

    Args:
        transition_model (TensorDictModule): reads the observation and action keys and writes its prediction of the
            next observation, e.g. :func:`~torchrl_shacpp.modules.transition_world_model`.

    Keyword Args:
        loss_function (str): ``"l2"`` (paper), ``"l1"`` or ``"smooth_l1"``. Defaults to ``"l2"``.
        periodic (PeriodicFeatures, optional): the observation's angle features, as the model's
            (:class:`~torchrl_shacpp.modules.TransitionWorldModel`). Defaults to none.

    Returns (forward):
        a TensorDict with ``loss_world``.
    """

    @dataclass
    class _AcceptedKeys:
        """Configurable tensordict keys (set them with :meth:`set_keys`).

        Attributes:
            observation: the observation key, read under ``"next"`` as the target. Defaults to ``"observation"``.
            predicted_observation: the transition model's output key. Defaults to ``"predicted_observation"``.
        """

        observation: NestedKey = "observation"
        predicted_observation: NestedKey = "predicted_observation"

    default_keys = _AcceptedKeys
    out_keys = ["loss_world"]

    def __init__(
        self, transition_model: TensorDictModule, *, loss_function: str = "l2", periodic: PeriodicFeatures | None = None
    ) -> None:
        super().__init__()
        self.transition_model = transition_model
        self.loss_function = loss_function
        self.periodic = periodic

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        keys = self.tensor_keys
        loss = regression_loss(
            self.transition_model, tensordict, keys.predicted_observation, keys.observation, self.loss_function,
            periodic=self.periodic,
        )
        return TensorDict({"loss_world": loss}, batch_size=[])
