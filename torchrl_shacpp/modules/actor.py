"""The SHAC policy: a Gaussian around a network's mean with a state-independent scale."""

from __future__ import annotations

import math

import torch
from tensordict import TensorDictBase
from tensordict.nn import ProbabilisticTensorDictSequential, TensorDictModule, TensorDictSequential
from tensordict.nn.distributions import AddStateIndependentNormalScale
from tensordict.utils import NestedKey
from torchrl.data import TensorSpec
from torchrl.envs import ExplorationType, set_exploration_type
from torchrl.modules import IndependentNormal, ProbabilisticActor

from torchrl_shacpp.checks import check_positive


class ClampedNormal(IndependentNormal):
    r"""The law of :math:`a = \operatorname{clip}(x, l, h)`, :math:`x \sim \mathcal N(\mu, \sigma^2 I)`, for a policy
    whose samples are clamped to the box :math:`[l, h]` after they are drawn: samples, ``rsample`` and ``log_prob``
    are :class:`~torchrl.modules.IndependentNormal`'s (the clamp is the policy's projection), and the deterministic
    sample is the mean of the clamped action, per component

    .. math::
        \mathbb E[a] = l\,\Phi(\alpha) + h\,(1 - \Phi(\beta)) + \mu\,(\Phi(\beta) - \Phi(\alpha))
            + \sigma\,(\phi(\alpha) - \phi(\beta)),
        \qquad \alpha = \frac{l - \mu}{\sigma},\ \beta = \frac{h - \mu}{\sigma},

    the action the env receives on average, where :math:`\mu` would act with a larger gain: with :math:`\sigma = 1`
    on :math:`[-1, 1]`, :math:`\partial \mathbb E[a] / \partial \mu = 0.68` at :math:`\mu = 0`, and
    :math:`\mathbb E[a] = 0.61` at :math:`\mu = 1`. As TorchRL's ``TruncatedNormal``, whose deterministic sample is
    its mean.

    Args:
        loc, scale: :math:`\mu` and :math:`\sigma`.
        low, high: the box :math:`l, h` (tensors broadcast against ``loc``, or numbers).
        **kwargs: :class:`~torchrl.modules.IndependentNormal`'s.
    """

    def __init__(
        self, loc: torch.Tensor, scale: torch.Tensor, *, low: torch.Tensor | float, high: torch.Tensor | float, **kwargs
    ) -> None:
        super().__init__(loc, scale, **kwargs)
        self.low = torch.as_tensor(low, dtype=loc.dtype, device=loc.device)
        self.high = torch.as_tensor(high, dtype=loc.dtype, device=loc.device)

    @property
    def deterministic_sample(self) -> torch.Tensor:
        loc, scale = self.mean, self.stddev
        alpha, beta = (self.low - loc) / scale, (self.high - loc) / scale
        standard = torch.distributions.Normal(torch.zeros_like(loc), torch.ones_like(loc))
        below, above = standard.cdf(alpha), 1 - standard.cdf(beta)
        density = standard.log_prob(alpha).exp() - standard.log_prob(beta).exp()
        return self.low * below + self.high * above + loc * (1 - below - above) + scale * density


def clamped_normal_log_prob(
    action: torch.Tensor,
    loc: torch.Tensor,
    scale: torch.Tensor,
    low: torch.Tensor | float,
    high: torch.Tensor | float,
) -> torch.Tensor:
    r"""Log-probability of a clamped Gaussian action, :math:`a = \operatorname{clip}(x, l, h)`,
    :math:`x \sim \mathcal N(\mu, \sigma^2 I)`, summed over the last (action) dimension.

    The clamp's law is a Gaussian density inside the box and a point mass on each face, so per component

    .. math::

        \log p(a) = \begin{cases}
            \log \Phi\big((l - \mu)/\sigma\big) & a \le l \\
            \log \Phi\big((\mu - h)/\sigma\big) & a \ge h \\
            \log \mathcal N(a; \mu, \sigma^2) & \text{otherwise,}
        \end{cases}

    whose score :math:`\nabla_\mu \log p(a)` is the likelihood-ratio gradient of the clamped policy: a clamped
    component pushes the mean towards or away from its face by how much mass lies beyond it, where the Gaussian
    density at the face would credit a sample that was never drawn there. ``log_ndtr`` keeps the tails finite.

    Args:
        action: the clamped action ``[..., action_dim]``.
        loc, scale: :math:`\mu` and :math:`\sigma`, broadcast against ``action``.
        low, high: the box (tensors broadcast against ``action``, or numbers).
    """
    density = torch.distributions.Normal(loc, scale).log_prob(action)
    below = torch.special.log_ndtr((low - loc) / scale)
    above = torch.special.log_ndtr((loc - high) / scale)
    log_prob = torch.where(action <= low, below, torch.where(action >= high, above, density))
    return log_prob.sum(-1)


def sampling_distribution_params(
    actor: ProbabilisticTensorDictSequential, tensordict: TensorDictBase
) -> TensorDictBase:
    """The distribution parameters (e.g. ``loc`` and ``scale``) that ``actor`` samples from on ``tensordict``'s
    inputs, with their graph to its parameters: its deterministic part run again, as under collection
    (``ExplorationType.RANDOM``, whatever the caller's)."""
    with set_exploration_type(ExplorationType.RANDOM), torch.enable_grad():
        return actor.get_dist_params(tensordict.select(*actor.in_keys).copy())


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
    clamped_mean: bool = False,
) -> ProbabilisticActor:
    r"""Policy :math:`a \sim \mathcal N(\mu_\theta(o), \sigma^2 I)` whose mean ``loc_module`` writes at ``loc_key``.

    :math:`\sigma` is state independent: fixed at ``action_std`` (the paper's variance 1) or, with
    ``learn_std``, a learned log-std initialised there. Under ``ExplorationType.RANDOM`` the action is drawn with
    ``rsample``, :math:`a = \mu_\theta(o) + \sigma\varepsilon`, which keeps the pathwise gradient SHAC needs.
    Actions are not squashed; with ``clamp`` the sample is clamped to the box of ``spec``,
    :math:`a = \operatorname{clip}(\mu_\theta(o) + \sigma\varepsilon, a_{\min}, a_{\max})`, as the authors' policy
    does: a clamped component has zero gradient, as in the simulator, which clamps the same way, and the learned world
    and reward models of SHAC+/SHAC++ see the actions the simulator applies.
    :class:`~torchrl_shacpp.objectives.SHACActorLoss` penalises a mean outside the box.

    The deterministic action (``ExplorationType.DETERMINISTIC``, e.g. BenchMARL's deterministic evaluation) is, with
    ``clamp`` and ``clamped_mean``, the mean of the clamped action (:class:`ClampedNormal`), the action the policy
    was trained to take on average; else :math:`\mu_\theta(o)` (clamped with ``clamp``).

    Args:
        loc_module: reads observations, writes :math:`\mu` at ``loc_key`` (``[..., action_dim]``).

    Keyword Args:
        action_dim: action features (the scale's size).
        loc_key, scale_key, action_key: where the mean, the scale and the action are written.
        action_std: :math:`\sigma`, or its initial value when learned. Defaults to 1.0.
        learn_std: learn :math:`\log\sigma`. Defaults to ``False``.
        spec: the action spec (a bounded one with ``clamp``).
        clamp: clamp the sample to the box of ``spec`` (TorchRL's ``safe`` projection). Defaults to ``True``.
        clamped_mean: with ``clamp``, the deterministic action is the clamped action's mean rather than
            :math:`\mu_\theta(o)`. Defaults to ``False``.
    """
    check_positive("action_std", action_std, "It is the policy's standard deviation (paper: 1).")
    if clamp and spec is None:
        raise ValueError("clamp=True clamps the actions to the box of the action spec: pass spec (or clamp=False).")
    scale = TensorDictModule(
        AddStateIndependentNormalScale(action_dim, make_param=learn_std, init_value=math.log(action_std)),
        in_keys=[loc_key],
        out_keys=[loc_key, scale_key],
    )
    box = dict(low=spec.space.low, high=spec.space.high) if clamp and clamped_mean else None
    return ProbabilisticActor(
        TensorDictSequential(loc_module, scale),
        in_keys={"loc": loc_key, "scale": scale_key},
        out_keys=[action_key],
        distribution_class=ClampedNormal if box else IndependentNormal,
        distribution_kwargs=box,
        spec=spec,
        safe=clamp,
    )
