"""The autograd graph of collected windows: cut between windows, re-attached to the actions of graph-free ones."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from tensordict import TensorDictBase
from tensordict.nn import ProbabilisticTensorDictSequential, TensorDictModuleBase
from tensordict.utils import NestedKey

from torchrl_shacpp.checks import check_count
from torchrl_shacpp.modules.actor import clamped_normal_log_prob, sampling_distribution_params


class WindowGraphCut(TensorDictModuleBase):
    r"""The first module of a graph-carrying collection policy: cuts the autograd graph between windows.

    A rollout that keeps the simulator's graph (BenchMARL's ``collect_with_grad``, SHAC and SHAC+) must not let a
    window's gradient reach the actions of an earlier window: the pathwise gradient would run over the whole rollout
    (and ``backward`` would traverse graphs already freed by the previous window's actor step). So, on the first
    graph-carrying step after :meth:`arm` (the start of the next collection) and every ``window_length`` steps after
    that (the windows inside a long collection), this module

    * replaces the graph-carrying leaves of the tensordict it is given (the carried observations) by detached ones,
      replaced rather than detached in place, because they may be views of the previous window, and
    * calls ``cut_env``, which detaches the simulator's internal state (for VMAS,
      :func:`~torchrl_shacpp.envs.detach_simulator_state` on the rollout env).

    Otherwise, and under :func:`torch.no_grad` (evaluation rollouts), it is the identity.

    Args:
        cut_env: detaches the environment's internal state, keeping its values.

    Keyword Args:
        window_length: steps per window inside a collection; ``None`` cuts only where armed.
    """

    in_keys: list = []
    out_keys: list = []

    def __init__(self, cut_env: Callable[[], None], *, window_length: int | None = None) -> None:
        super().__init__()
        if window_length is not None:
            check_count("window_length", window_length, hint="It is a number of steps (paper: 32), or None.")
        self.cut_env = cut_env
        self.window_length = window_length
        self.armed = False
        self.steps = 0

    def arm(self) -> None:
        """Cuts at the next graph-carrying step: call it when a collection's windows are done with."""
        self.armed = True

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if not torch.is_grad_enabled():
            return tensordict
        window_end = self.window_length is not None and self.steps == self.window_length
        if self.armed or window_end:
            carrying = [key for key, leaf in tensordict.items(True, True) if leaf.requires_grad]
            for key in carrying:
                tensordict.set(key, tensordict.get(key).detach())
            self.cut_env()
            self.armed, self.steps = False, 0
        self.steps += 1
        return tensordict


def attach_policy_graph(
    window: TensorDictBase,
    actor: ProbabilisticTensorDictSequential,
    *,
    action_key: NestedKey,
    loc_key: NestedKey,
    scale_key: NestedKey,
    log_prob_key: NestedKey | None = None,
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
    the policy has not changed since collection (dropout aside: a stochastic network gives a fresh mask). After the
    policy has changed (several windows of one collection, each with its own actor step), the gradient is the
    current policy's at the collected actions.

    If the actor clamps its samples to the box of its spec (TorchRL's ``safe`` projection, as
    :func:`~torchrl_shacpp.modules.gaussian_actor` does by default), a component on a face of the box was clamped and
    has zero gradient: :math:`\tilde a` keeps the gradient of the components strictly inside the box only, where
    :math:`a = \mu_\theta + \sigma_\theta\varepsilon` and the recovered noise is exact.

    The written ``loc`` and ``scale`` are the recomputed ones, so the action-bound penalty and a likelihood-ratio
    term have their gradients too. With ``log_prob_key``, the collected action's log-probability under the policy
    that collected it (the window's stored ``loc`` and ``scale``, read before they are overwritten;
    :func:`~torchrl_shacpp.modules.clamped_normal_log_prob` on the box the actor clamps to) is written there,
    detached: the denominator of an importance ratio :math:`\pi_\theta(a|o) / \pi_{\text{old}}(a|o)` for a window
    the policy has changed since.

    Args:
        window: a ``[*B, T]`` window with observations and the sampled actions.
        actor: the Gaussian policy that produced the actions, e.g. a
            :class:`~torchrl.modules.ProbabilisticActor` from :func:`~torchrl_shacpp.modules.gaussian_actor`.

    Keyword Args:
        action_key, loc_key, scale_key: the action and the distribution parameters the actor writes.
        log_prob_key: where to write the collected action's log-probability under the collecting policy, or
            ``None``.
    """
    params = sampling_distribution_params(actor, window)
    loc, scale = params.get(loc_key), params.get(scale_key)
    action = window.get(action_key).detach()
    noise = (action - loc.detach()) / scale.detach()
    pathwise = (loc - loc.detach()) + (scale - scale.detach()) * noise
    sampler = actor.module[-1]  # the distribution module, which projects samples onto its spec when safe
    low, high = -math.inf, math.inf
    if getattr(sampler, "safe", False):
        box = sampler.spec[action_key].space
        low, high = box.low, box.high
        pathwise = pathwise * ((action > low) & (action < high))
    window = window.copy()
    if log_prob_key is not None:
        if loc_key not in window.keys(True) or scale_key not in window.keys(True):
            raise KeyError(
                f"log_prob_key={log_prob_key!r} reads the collecting policy's {loc_key!r} and {scale_key!r}, which "
                "the window does not hold: collect with the actor that writes them (gaussian_actor), or pass "
                "log_prob_key=None."
            )
        collected = clamped_normal_log_prob(action, window.get(loc_key), window.get(scale_key), low, high)
        window.set(log_prob_key, collected.detach().unsqueeze(-1))
    window.set(action_key, action + pathwise)
    window.set(loc_key, loc)
    window.set(scale_key, scale)
    return window
