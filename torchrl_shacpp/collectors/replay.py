"""Re-attaching the policy's autograd graph to actions collected without one."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import ProbabilisticTensorDictSequential
from tensordict.utils import NestedKey
from torchrl.envs import ExplorationType, set_exploration_type


def attach_policy_graph(
    window: TensorDictBase,
    actor: ProbabilisticTensorDictSequential,
    *,
    action_key: NestedKey,
    loc_key: NestedKey,
    scale_key: NestedKey,
) -> TensorDictBase:
    r"""A shallow copy of ``window`` whose actions carry the policy's pathwise graph, with unchanged values.

    A Gaussian policy's sample is :math:`a = \mu_\theta(o) + \sigma_\theta\,\varepsilon`. A collector that ran
    without autograd stored :math:`a` but no graph. Re-running the actor's deterministic part on the stored
    observations gives :math:`\mu_\theta(o)` and :math:`\sigma_\theta` with their graphs; with the noise recovered
    as :math:`\varepsilon = (a - \mu)/\sigma`,

    .. math::

        \tilde a = a + \big(\mu_\theta - \operatorname{sg}(\mu_\theta)\big)
                     + \big(\sigma_\theta - \operatorname{sg}(\sigma_\theta)\big)\,\varepsilon

    equals :math:`a` in value and has the reparameterisation gradient :math:`\partial\tilde a/\partial\theta =
    \partial\mu_\theta/\partial\theta + \varepsilon\,\partial\sigma_\theta/\partial\theta` (``sg`` stops the
    gradient). So a SHAC++ actor step on a graph-free window (e.g. from a TorchRL collector, which always runs
    under ``no_grad``) gives exactly the gradient of the same window collected with the policy's graph, as long as
    the policy has not changed since collection (dropout aside: a stochastic network gives a fresh mask).

    If the actor clamps its samples to the box of its spec (TorchRL's ``safe`` projection, as
    :func:`~torchrl_shacpp.modules.gaussian_actor` does by default), a component on a face of the box was clamped and
    has zero gradient: :math:`\tilde a` keeps the gradient of the components strictly inside the box only, where
    :math:`a = \mu_\theta + \sigma_\theta\varepsilon` and the recovered noise is exact.

    The written ``loc`` is the recomputed mean, so the action-bound penalty has its gradient too.

    Args:
        window: a ``[*B, T]`` window with observations and the sampled (unclamped) actions.
        actor: the Gaussian policy that produced the actions, e.g. a
            :class:`~torchrl.modules.ProbabilisticActor` from :func:`~torchrl_shacpp.modules.gaussian_actor`.

    Keyword Args:
        action_key, loc_key, scale_key: the action and the distribution parameters the actor writes.
    """
    with set_exploration_type(ExplorationType.RANDOM), torch.enable_grad():
        params = actor.get_dist_params(window.select(*actor.in_keys).copy())
    loc, scale = params.get(loc_key), params.get(scale_key)
    action = window.get(action_key).detach()
    noise = (action - loc.detach()) / scale.detach()
    pathwise = (loc - loc.detach()) + (scale - scale.detach()) * noise
    sampler = actor.module[-1]  # the distribution module, which projects samples onto its spec when safe
    if getattr(sampler, "safe", False):
        box = sampler.spec[action_key].space
        pathwise = pathwise * ((action > box.low) & (action < box.high))
    window = window.copy()
    window.set(action_key, action + pathwise)
    window.set(loc_key, loc)
    return window
