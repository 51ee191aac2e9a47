"""VMAS dispersion with the agents starting apart, as the SHAC++ authors' task."""

from __future__ import annotations

import math

import torch
from vmas.scenarios.dispersion import Scenario as DispersionScenario
from vmas.simulator.core import World


class SpreadStartDispersion(DispersionScenario):
    r"""VMAS ``dispersion`` whose agents start evenly spaced on a circle around the origin.

    VMAS starts every agent at the origin. Their observations (own position and velocity, each food's offset and
    eaten flag) are then identical, and a policy shared by the agents, evaluated deterministically, keeps them
    identical: the agents move as one and can eat one food at a time only by luck of the noise. The SHAC++ authors
    place agent :math:`j` of :math:`n` at :math:`\rho\,(\cos 2\pi j/n, \sin 2\pi j/n)` instead (paper App. A.1,
    :math:`\rho = 0.05`), which breaks the symmetry and changes nothing else: the food is still uniform in the
    arena, rewards and observations are VMAS's.

    Keyword Args (to ``make_world``, i.e. passed through ``vmas.make_env`` / ``VmasEnv``):
        agent_start_radius (float): :math:`\rho`. Defaults to 0, VMAS's start (the paper's task sets 0.05).
        **kwargs: VMAS dispersion's own (``n_agents``, ``n_food``, ``share_reward``, ``food_radius``,
            ``penalise_by_time``, ``pos_range``).
    """

    def make_world(self, batch_dim: int, device: torch.device, **kwargs) -> World:
        radius = kwargs.pop("agent_start_radius", 0.0)
        if radius < 0:
            raise ValueError(f"agent_start_radius must be at least 0, got {radius}.")
        world = super().make_world(batch_dim, device, **kwargs)
        n_agents = len(world.agents)
        angles = torch.arange(n_agents, device=device, dtype=torch.float32) * (2 * math.pi / n_agents)
        self.start_positions = radius * torch.stack([angles.cos(), angles.sin()], dim=-1)
        return world

    def reset_world_at(self, env_index: int | None = None) -> None:
        super().reset_world_at(env_index)
        for agent, position in zip(self.world.agents, self.start_positions):
            agent.set_pos(position, batch_index=env_index)
