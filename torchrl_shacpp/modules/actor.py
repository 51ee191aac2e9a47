"""The SHAC policy: a Gaussian around a network's mean with a state-independent scale."""

from __future__ import annotations

import math

from tensordict.nn import TensorDictModule, TensorDictSequential
from tensordict.nn.distributions import AddStateIndependentNormalScale
from tensordict.utils import NestedKey
from torchrl.data import TensorSpec
from torchrl.modules import IndependentNormal, ProbabilisticActor

from torchrl_shacpp.checks import check_positive


def gaussian_actor(
    loc_module: TensorDictModule,
    *,
    action_dim: int,
    loc_key: NestedKey,
    scale_key: NestedKey,
    action_key: NestedKey,
    action_std: float = 1.0,
    learn_std: bool = False,
    spec: TensorSpec | None = None,
    clamp: bool = True,
) -> ProbabilisticActor:
    r"""Policy :math:`a \sim \mathcal N(\mu_\theta(o), \sigma^2 I)` whose mean ``loc_module`` writes at ``loc_key``.

    :math:`\sigma` is state independent: fixed at ``action_std`` (the paper's variance 1) or, with
    ``learn_std``, a learned log-std initialised there. Under ``ExplorationType.RANDOM`` the action is drawn with
    ``rsample``, :math:`a = \mu_\theta(o) + \sigma\varepsilon`, which keeps the pathwise gradient SHAC needs; the
    deterministic action is :math:`\mu_\theta(o)`. Actions are not squashed; with ``clamp`` the sample is clamped to
    the box of ``spec``, :math:`a = \operatorname{clip}(\mu_\theta(o) + \sigma\varepsilon, a_{\min}, a_{\max})`, as
    the authors' policy does: a clamped component has zero gradient, as in the simulator, which clamps the same way,
    and the learned world and reward models of SHAC+/SHAC++ see the actions the simulator applies.
    :class:`~torchrl_shacpp.objectives.SHACActorLoss` penalises a mean outside the box.

    Args:
        loc_module: reads observations, writes :math:`\mu` at ``loc_key`` (``[..., action_dim]``).

    Keyword Args:
        action_dim: action features (the scale's size).
        loc_key, scale_key, action_key: where the mean, the scale and the action are written.
        action_std: :math:`\sigma`, or its initial value when learned. Defaults to 1.0.
        learn_std: learn :math:`\log\sigma`. Defaults to ``False``.
        spec: the action spec (a bounded one with ``clamp``).
        clamp: clamp the sample to the box of ``spec`` (TorchRL's ``safe`` projection). Defaults to ``True``.
    """
    check_positive("action_std", action_std, "It is the policy's standard deviation (paper: 1).")
    if clamp and spec is None:
        raise ValueError("clamp=True clamps the actions to the box of the action spec: pass spec (or clamp=False).")
    scale = TensorDictModule(
        AddStateIndependentNormalScale(action_dim, make_param=learn_std, init_value=math.log(action_std)),
        in_keys=[loc_key],
        out_keys=[loc_key, scale_key],
    )
    return ProbabilisticActor(
        TensorDictSequential(loc_module, scale),
        in_keys={"loc": loc_key, "scale": scale_key},
        out_keys=[action_key],
        distribution_class=IndependentNormal,
        spec=spec,
        safe=clamp,
    )
