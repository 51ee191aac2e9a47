"""Optimiser steps that never write non-finite values into parameters."""

from __future__ import annotations

import logging
import math

import torch

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
            ``None`` measures the norm without clipping.

    Examples:
        >>> step = FiniteGradientStep(torch.optim.Adam(actor.parameters(), lr=1e-3), max_grad_norm=1.0)
        >>> info = step(loss)  # {"grad_norm": ..., "skipped": 0.0 or 1.0}
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_grad_norm: float | None = None) -> None:
        self.optimizer = optimizer
        self.max_grad_norm = math.inf if max_grad_norm is None else max_grad_norm
        self.skipped_steps = 0

    @property
    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def __call__(self, loss: torch.Tensor) -> dict[str, float]:
        """Runs one guarded step on ``loss`` and returns ``{"grad_norm", "skipped"}`` for logging.

        ``grad_norm`` is the total norm before clipping (NaN when the loss itself was not finite).
        """
        self.optimizer.zero_grad(set_to_none=True)
        grad_norm = torch.tensor(math.nan)
        if torch.isfinite(loss):
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.max_grad_norm)
        if not torch.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped_steps += 1
            logger.warning(
                "Skipped an optimiser step: non-finite %s (%d skipped so far).",
                "gradient" if torch.isfinite(loss) else "loss",
                self.skipped_steps,
            )
            return {"grad_norm": grad_norm.item(), "skipped": 1.0}
        self.optimizer.step()
        return {"grad_norm": grad_norm.item(), "skipped": 0.0}
