"""Optimiser steps that never write non-finite values into parameters."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
from torch.utils.hooks import RemovableHandle

from torchrl_shacpp.checks import check_positive

logger = logging.getLogger(__name__)


class FiniteGradientStep:
    """Backward, clip and step an optimiser, or skip the step when the loss or gradient is not finite.

    Gradients through stiff simulator contacts can overflow (SHAC on transport grows them with the horizon);
    one NaN written into a parameter ends a run. This step checks the loss before ``backward`` and the total
    gradient norm after it; on a non-finite value it clears the gradients, leaves the parameters and the
    optimiser state untouched, counts the skip in :attr:`skipped_steps` and logs a warning.

    Args:
        optimizer (torch.optim.Optimizer): the optimiser to step.
        max_grad_norm (float, optional): clip the total gradient norm to this value (paper: 1.0 for the policy).
            ``None`` measures the norm without clipping. A norm <= 0 is refused: torch's clip would scale the
            gradient by a negative factor and step uphill.

    Examples:
        >>> step = FiniteGradientStep(torch.optim.Adam(actor.parameters(), lr=1e-3), max_grad_norm=1.0)
        >>> info = step(loss)  # {"grad_norm": ..., "skipped": 0.0 or 1.0}
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_grad_norm: float | None = None) -> None:
        if max_grad_norm is not None:
            check_positive("max_grad_norm", max_grad_norm, "It clips the gradient norm (paper: 1); None disables it.")
        self.optimizer = optimizer
        self.max_grad_norm = math.inf if max_grad_norm is None else max_grad_norm
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
        """Clips ``gradients`` (from :meth:`gradients`) and steps, or skips the step if they are not finite."""
        self.optimizer.zero_grad(set_to_none=True)
        if gradients is None:
            return self._skip("loss", math.nan)
        for parameter, gradient in zip(self.parameters, gradients):
            parameter.grad = gradient
        grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.max_grad_norm).item()
        if not math.isfinite(grad_norm):
            return self._skip("gradient", grad_norm)
        self.optimizer.step()
        return {"grad_norm": grad_norm, "skipped": 0.0}

    def _skip(self, what: str, grad_norm: float) -> dict[str, float]:
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped_steps += 1
        logger.warning("Skipped an optimiser step: non-finite %s (%d skipped so far).", what, self.skipped_steps)
        return {"grad_norm": grad_norm, "skipped": 1.0}


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
