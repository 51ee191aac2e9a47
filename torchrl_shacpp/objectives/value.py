"""TD(λ) value loss for short-horizon windows."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule, ValueEstimators
from torchrl.objectives.utils import distance_loss
from torchrl.objectives.value import TDLambdaEstimator

from torchrl_shacpp.checks import check_fraction
from torchrl_shacpp.objectives.utils import check_window, expand_like, window_end_as_done


class TDLambdaValueLoss(LossModule):
    r"""Regresses a value network onto TD(λ) targets computed over a window of ``h`` steps.

    For a window of transitions :math:`(s_t, r_t, s'_{t})_{t<h}` the target is the λ-return

    .. math::

        G_t = r_t + \gamma \big[(1-\lambda)\, \bar V(s'_t) + \lambda\, G_{t+1}\big],
        \qquad G_t = r_t + \gamma\, \bar V(s'_t) \ \text{at an episode end or at } t = h-1,

    with :math:`\bar V(s'_t) = 0` after a termination, :math:`s'_t` the pre-reset next observation after a
    time-limit truncation, and :math:`\bar V` the target critic (a Polyak average of :math:`V`) when
    ``use_target_network=True`` or the current critic otherwise. The last step of the window is always a
    bootstrap point: the window cuts the episode, the task did not end it (the authors' SHAC++ code
    under-bootstraps it with :math:`r + \gamma(1-\lambda)V`; we do not). The loss is
    :math:`\operatorname{mean}_t \lVert V(s_t) - G_t \rVert^2`.

    Targets are computed with TorchRL's :class:`~torchrl.objectives.value.TDLambdaEstimator` on the
    ``[*B, T]`` window (multi-agent rewards ``[*B, T, n_agents, 1]`` are supported: env-level done flags are
    broadcast to the agents). Call :meth:`value_targets` on the window before flattening it into minibatches;
    :meth:`forward` computes the targets itself when ``value_target`` is missing and the input has a dimension
    named ``"time"`` (as windows from :class:`~torchrl_shacpp.collectors.WindowCollector` do).

    Args:
        value_network (TensorDictModule): the critic; reads observations, writes ``value``.

    Keyword Args:
        gamma (float): discount. Defaults to 0.99.
        lmbda (float): TD(λ) parameter. Defaults to 0.95.
        use_target_network (bool): keep a Polyak-averaged target critic for the targets (SHAC does; the
            authors' SHAC++ does not). Update it with :class:`torchrl.objectives.SoftUpdate`.
            Defaults to ``False``.
        loss_function (str): ``"l2"`` (paper), ``"l1"`` or ``"smooth_l1"``. Defaults to ``"l2"``.

    Returns (forward):
        a TensorDict with ``loss_value``.

    Examples:
        >>> loss = TDLambdaValueLoss(critic, gamma=0.99, lmbda=0.95)
        >>> loss.set_keys(reward=("agents", "reward"), value=("agents", "state_value"))
        >>> window["agents", "value_target"] = loss.value_targets(window)
        >>> for batch in window.reshape(-1).split(4096):
        ...     loss(batch)["loss_value"].backward()
    """

    @dataclass
    class _AcceptedKeys:
        """Configurable tensordict keys (set them with :meth:`set_keys`).

        Attributes:
            value: the critic's output key. Defaults to ``"state_value"``.
            value_target: where the λ-targets are read from / written to. Defaults to ``"value_target"``.
            reward: the reward key under ``"next"``. Defaults to ``"reward"``.
            done: the done key under ``"next"``. Defaults to ``"done"``.
            terminated: the termination key under ``"next"``. Defaults to ``"terminated"``.
        """

        value: NestedKey = "state_value"
        value_target: NestedKey = "value_target"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"

    default_keys = _AcceptedKeys
    default_value_estimator = ValueEstimators.TDLambda
    out_keys = ["loss_value"]

    value_network: TensorDictModule
    value_network_params: TensorDictParams
    target_value_network_params: TensorDictParams

    def __init__(
        self,
        value_network: TensorDictModule,
        *,
        gamma: float = 0.99,
        lmbda: float = 0.95,
        use_target_network: bool = False,
        loss_function: str = "l2",
    ) -> None:
        super().__init__()
        check_fraction("gamma", gamma, "It discounts the bootstrapped value (paper: 0.99).")
        check_fraction("lmbda", lmbda, "It weighs the n-step returns of the TD(λ) targets (paper: 0.95).")
        self.use_target_network = use_target_network
        self.loss_function = loss_function
        self.convert_to_functional(
            value_network, "value_network", create_target_params=use_target_network
        )
        self.make_value_estimator(self.default_value_estimator, gamma=gamma, lmbda=lmbda)

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        # The estimator only ever sees the flat view built in `value_targets`, so its keys never change.
        pass

    def make_value_estimator(self, value_type: ValueEstimators = None, **hyperparams) -> None:
        """Builds the TD(λ) estimator; other estimators are not supported by this loss."""
        if value_type not in (None, ValueEstimators.TDLambda):
            raise NotImplementedError(
                f"{type(self).__name__} computes TD(λ) targets only; got value estimator {value_type}."
            )
        self._value_estimator = TDLambdaEstimator(value_network=None, **hyperparams)

    @property
    def bootstrap_params(self) -> TensorDictBase:
        """Detached parameters the bootstrap values are computed with (target critic if any).

        Pass them to :class:`~torchrl_shacpp.objectives.SHACActorLoss` so that the actor bootstraps with the
        same critic as the value targets. Read as a child module: TorchRL's attribute access warns that no target
        updater is associated yet, which is the normal order when the updater (e.g. BenchMARL's) is made after
        the losses that share the target.
        """
        if self.use_target_network:
            return dict(self.named_children())["target_value_network_params"]
        return self.value_network_params.data

    @torch.no_grad()
    def value_targets(self, tensordict: TensorDictBase) -> torch.Tensor:
        """Computes the λ-targets of a ``[*B, T]`` window (no gradient) and returns them.

        The returned tensor has the reward's shape, e.g. ``[*B, T, n_agents, 1]``.
        """
        time_dim = check_window(tensordict, type(self).__name__)
        keys = self.tensor_keys
        next_td = tensordict.get("next")
        reward = next_td.get(keys.reward)
        with self.bootstrap_params.to_module(self.value_network):
            next_value = self.value_network(next_td.select(*self.value_network.in_keys)).get(keys.value)
        done = expand_like(next_td.get(keys.done), reward)
        terminated = expand_like(next_td.get(keys.terminated), reward)
        done = window_end_as_done(done, time_dim)
        # A flat view with the estimator's default keys: the estimator needs every input in one shape.
        view = TensorDict(
            {"next": {"reward": reward, "done": done, "terminated": terminated}},
            batch_size=tensordict.batch_size,
        )
        return self.value_estimator.value_estimate(view, next_value=next_value, time_dim=time_dim)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        keys = self.tensor_keys
        target = tensordict.get(keys.value_target, None)
        if target is None:
            if "time" not in tensordict.names:
                raise KeyError(
                    f"No value target at {keys.value_target!r} and no dimension named 'time' to compute it over. "
                    "Call value_targets() on the [*B, T] window before flattening it (WindowCollector names the "
                    "time dimension), or set_keys(value_target=...) to where the targets are."
                )
            target = self.value_targets(tensordict)
        with self.value_network_params.to_module(self.value_network):
            value = self.value_network(tensordict.select(*self.value_network.in_keys)).get(keys.value)
        loss = distance_loss(value, target, self.loss_function).mean()
        return TensorDict({"loss_value": loss}, batch_size=[])
