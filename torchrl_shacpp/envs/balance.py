"""VMAS balance with the line's rotation observed continuously around level."""

from __future__ import annotations

import math

import torch
from vmas.scenarios.balance import Scenario as BalanceScenario
from vmas.simulator.core import Agent


class CentredRotationBalance(BalanceScenario):
    r"""VMAS ``balance`` whose observation gives the line's rotation in :math:`[-\pi/2, \pi/2)` instead of
    :math:`[0, \pi)`.

    VMAS observes the line's rotation :math:`\theta` modulo :math:`\pi` (a half turn leaves the line as it was) as
    its last feature, :math:`\theta \bmod \pi \in [0, \pi)`. A level line sits on that cut: whenever it tilts across
    level, the feature jumps between about 0 and about :math:`\pi`. A learned function of the observation then sees
    one configuration as two inputs :math:`\pi` apart, and a transition model fitted to the change has to predict
    jumps of :math:`\pm\pi`. Fitted to VMAS's balance for 3,000 steps, SHAC++'s one-step model explains 21% of the
    line velocity's change, and its Jacobians chained over a window blow up (norm 76-1,700 times VMAS's); fitted to
    this observation, 71%, and no blow-up (``benchmarks/results/transition_model_fit.md``).

    Here the same angle modulo :math:`\pi` is taken in :math:`[-\pi/2, \pi/2)`,

    .. math:: \theta_c = \big((\theta + \pi/2) \bmod \pi\big) - \pi/2,

    which is VMAS's feature where that is below :math:`\pi/2` and VMAS's minus :math:`\pi` elsewhere: a bijection
    with derivative 1, cut at a vertical line, which a balancing team never reaches. Rewards, the other features
    and the simulator's gradients are VMAS's.
    """

    def observation(self, agent: Agent) -> torch.Tensor:
        observation = super().observation(agent)
        centred_rotation = torch.remainder(self.line.state.rot + math.pi / 2, math.pi) - math.pi / 2
        return torch.cat([observation[..., :-1], centred_rotation], dim=-1)
