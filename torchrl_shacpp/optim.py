"""Optimiser steps that never write non-finite values into parameters, and a bound on a policy step's size."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torch.utils.hooks import RemovableHandle
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_shacpp.checks import check_positive

logger = logging.getLogger(__name__)


class FiniteGradientStep:
    """Backward, clip and step an optimiser, or skip the step when the loss or gradient is not finite.

    Gradients through stiff simulator contacts can overflow (SHAC on transport grows them with the horizon);
    one NaN written into a parameter ends a run. This step checks the loss before ``backward`` and the total
    gradient norm after it; on a non-finite value it clears the gradients, leaves the parameters and the
    optimiser state untouched, counts the skip in :attr:`skipped_steps` and logs a warning. With ``skip_grad_norm``
    it skips a step whose gradient norm exceeds it in the same way: clipping keeps an exploded gradient's direction
    (SHAC++ on dispersion with 3 agents: norms of 1e2-6e9 against the usual 0.5-2 while its return collapsed).

    Args:
        optimizer (torch.optim.Optimizer): the optimiser to step.
        max_grad_norm (float, optional): clip the total gradient norm to this value (paper: 1.0 for the policy).
            ``None`` measures the norm without clipping. A norm <= 0 is refused: torch's clip would scale the
            gradient by a negative factor and step uphill.
        skip_grad_norm (float, optional): skip a step whose gradient norm (before clipping) is above this, or
            ``None`` (paper) to skip only non-finite ones.

    Examples:
        >>> step = FiniteGradientStep(torch.optim.Adam(actor.parameters(), lr=1e-3), max_grad_norm=1.0)
        >>> info = step(loss)  # {"grad_norm": ..., "skipped": 0.0 or 1.0}
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, max_grad_norm: float | None = None, skip_grad_norm: float | None = None
    ) -> None:
        if max_grad_norm is not None:
            check_positive("max_grad_norm", max_grad_norm, "It clips the gradient norm (paper: 1); None disables it.")
        if skip_grad_norm is not None:
            check_positive("skip_grad_norm", skip_grad_norm, "Steps above it are skipped; None skips non-finite only.")
        self.optimizer = optimizer
        self.max_grad_norm = math.inf if max_grad_norm is None else max_grad_norm
        self.skip_grad_norm = math.inf if skip_grad_norm is None else skip_grad_norm
        self.skipped_steps = 0

    @property
    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def __call__(self, loss: torch.Tensor, retain_graph: bool = False) -> dict[str, float]:
        """Runs one guarded step on ``loss`` and returns ``{"grad_norm", "skipped"}`` for logging.

        ``grad_norm`` is the total norm before clipping (NaN when the loss itself was not finite). ``retain_graph``
        keeps the graph for another loss that shares it (several agent groups acting in one simulator).
        """
        return self.apply(self.gradients(loss, retain_graph=retain_graph))

    def gradients(self, loss: torch.Tensor, retain_graph: bool = False) -> list[torch.Tensor | None] | None:
        """The gradient of ``loss`` w.r.t. the optimised parameters (``None`` entries for unused ones), or ``None``
        when the loss is not finite; :meth:`apply` steps with them.

        For several steps whose graphs hang on the same parameters: every gradient must be taken before the
        first step changes the parameters in place under the graphs that saved them.
        """
        if not torch.isfinite(loss):
            return None
        return list(torch.autograd.grad(loss, self.parameters, retain_graph=retain_graph, allow_unused=True))

    def apply(self, gradients: list[torch.Tensor | None] | None) -> dict[str, float]:
        """Clips ``gradients`` (from :meth:`gradients`) and steps, or skips the step if they are not finite or their
        norm is above :attr:`skip_grad_norm`."""
        self.optimizer.zero_grad(set_to_none=True)
        if gradients is None:
            return self._skip("non-finite loss", math.nan)
        for parameter, gradient in zip(self.parameters, gradients):
            parameter.grad = gradient
        grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.max_grad_norm).item()
        if not math.isfinite(grad_norm):
            return self._skip("non-finite gradient", grad_norm)
        if grad_norm > self.skip_grad_norm:
            return self._skip(f"gradient norm above {self.skip_grad_norm:g}", grad_norm)
        self.optimizer.step()
        return {"grad_norm": grad_norm, "skipped": 0.0}

    def _skip(self, what: str, grad_norm: float) -> dict[str, float]:
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped_steps += 1
        logger.warning("Skipped an optimiser step: %s (%d skipped so far).", what, self.skipped_steps)
        return {"grad_norm": grad_norm, "skipped": 1.0}


class PolicyMeanStepBound:
    r"""Shrinks a policy's optimiser step so that its mean action moves at most ``max_change`` where it was taken.

    A pathwise gradient through learned models can step the policy to where the models are wrong: the imagined
    objective keeps improving while the collected return collapses (dispersion, 3 agents,
    ``benchmarks/results/dispersion/README.md``). With :math:`\theta` the parameters before a step, :math:`\theta'`
    after it and :math:`\mu_\theta(o)` the policy's mean on the step's observations :math:`o`, the step's change is
    the root mean square over observations and action components

    .. math::

        c = \sqrt{\operatorname{mean}_{o,i}\big(\mu_{\theta'}(o)_i - \mu_\theta(o)_i\big)^2}

    (for Gaussian policies of one fixed :math:`\sigma`, the KL divergence between the two is :math:`c^2 / 2\sigma^2`
    per component). When :math:`c > \delta` the step is shrunk along its direction, :math:`\theta \leftarrow
    \theta + (\delta / c)(\theta' - \theta)`, which moves the mean by :math:`\delta` to first order: a trust region
    in action space, one rescale where TRPO searches a line. The optimiser's moments keep the whole step's gradient.

    Args:
        policy (TensorDictModule): the policy, writing its mean under ``loc_key``.
        parameters (list of torch.nn.Parameter): the parameters the step changes (the optimiser's).
        loc_key (NestedKey): where the policy writes its mean.
        max_change (float): :math:`\delta`, the largest root-mean-square change of the mean per step.

    Examples:
        >>> bound = PolicyMeanStepBound(policy, step.parameters, ("agents", "loc"), max_change=0.05)
        >>> info = bound(window, lambda: step(loss))  # step's info, plus "mean_change" (c) and "step_scale"
    """

    def __init__(
        self,
        policy: TensorDictModule,
        parameters: list[torch.nn.Parameter],
        loc_key: NestedKey,
        max_change: float,
    ) -> None:
        check_positive("max_change", max_change, "It is the largest RMS change of the policy's mean per step.")
        self.policy = policy
        self.parameters = parameters
        self.loc_key = loc_key
        self.max_change = max_change

    def _mean(self, observations: TensorDictBase) -> torch.Tensor:
        # Deterministic: the mean without drawing an action, so that the bound leaves the run's random stream alone.
        with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
            return self.policy(observations.copy()).get(self.loc_key)

    def __call__(self, window: TensorDictBase, step: Callable[[], dict[str, float]]) -> dict[str, float]:
        """Runs ``step`` (an optimiser step of :attr:`parameters`) and shrinks it if the mean on ``window``'s
        observations moved more than :attr:`max_change`; returns ``step``'s info with ``mean_change`` (:math:`c`,
        before shrinking) and ``step_scale`` (the factor kept, 1 when within the bound)."""
        observations = window.select(*self.policy.in_keys).detach()
        before = [parameter.detach().clone() for parameter in self.parameters]
        mean_before = self._mean(observations)
        info = step()
        change = (self._mean(observations) - mean_before).pow(2).mean().sqrt().item()
        scale = self.max_change / change if change > self.max_change else 1.0
        if scale < 1.0:
            with torch.no_grad():
                for parameter, old in zip(self.parameters, before):
                    parameter.copy_(old + scale * (parameter - old))
        return {**info, "mean_change": change, "step_scale": scale}


def skip_non_finite_steps(optimizer: torch.optim.Optimizer, on_skip: Callable[[], None]) -> RemovableHandle:
    """Makes ``optimizer.step()`` a no-op whenever a gradient holds a NaN or an infinity.

    For optimisers stepped by code we do not own (BenchMARL's optimiser loop): a step pre-hook drops every
    gradient of the optimiser when one is not finite, so the step leaves parameters and optimiser state untouched
    (torch optimisers skip parameters without a gradient), then calls ``on_skip`` (to count and log it).

    Returns:
        the hook's handle (``handle.remove()`` undoes it).
    """

    def drop_non_finite_gradients(opt: torch.optim.Optimizer, args, kwargs) -> None:
        params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
        if params and not torch.stack([torch.isfinite(p.grad).all() for p in params]).all():
            for p in params:
                p.grad = None
            on_skip()

    return optimizer.register_step_pre_hook(drop_non_finite_gradients)


def load_state_keeping_rates(optimizer: torch.optim.Optimizer, state_dict: dict) -> None:
    """Loads an optimiser's saved state (Adam's moments and step counts) but keeps the rates it was built with.

    ``Optimizer.load_state_dict`` also restores each group's ``lr``, so a run restored with a changed rate (e.g.
    ``algorithm.actor_lr=2e-4``) would silently go on at the checkpoint's; the configured rate wins instead (a linear
    schedule sets its rate from the iteration count at every collection anyway).
    """
    rates = [group["lr"] for group in optimizer.param_groups]
    optimizer.load_state_dict(state_dict)
    for group, rate in zip(optimizer.param_groups, rates):
        group["lr"] = rate


def bound_outlier_gradients(tensor: torch.Tensor, max_ratio: float) -> torch.Tensor:
    r"""Scales down, in the backward pass, the rows of ``tensor``'s gradient whose norm is an outlier.

    With :math:`g_i` the gradient's row :math:`i` (its last dimension, e.g. one agent-step's action) and :math:`m`
    the median (the lower middle one) of the non-zero rows' norms, the gradient passed on upstream is

    .. math::

        g_i \leftarrow g_i \min\Big(1, \frac{r\, m}{\lVert g_i\rVert}\Big), \qquad r = \text{max\_ratio}.

    Through a learned model's chained Jacobians a few agent-steps' gradients can explode (SHAC++ on dispersion with
    3 agents: the earliest steps' action gradients 1e3 times the last ones' in the windows where its return
    collapsed); a clip of the total norm keeps their direction, this keeps every agent-step's share bounded.
    Rows that are all zero (e.g. clamped actions) do not count in the median.

    Returns ``tensor`` itself, with the hook registered (it must require grad).
    """
    check_positive("max_ratio", max_ratio)

    def bound(gradient: torch.Tensor) -> torch.Tensor:
        norms = gradient.norm(dim=-1, keepdim=True)
        nonzero = norms[norms > 0]
        if nonzero.numel() == 0:
            return gradient
        limit = max_ratio * nonzero.median()
        return gradient * (limit / norms).clamp(max=1.0)  # a zero row: inf, clamped to 1

    tensor.register_hook(bound)
    return tensor
