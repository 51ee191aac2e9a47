"""VMAS navigation with a gradient for its agent-collision penalty."""

from __future__ import annotations

import torch
from torch import Tensor
from vmas.scenarios.navigation import Scenario as NavigationScenario
from vmas.simulator.core import Agent, World


class DifferentiableNavigation(NavigationScenario):
    r"""VMAS ``navigation``, whose collision penalty keeps VMAS's values and gains the gradient of a smoothed step.

    VMAS charges each agent :math:`P` (``agent_collision_penalty``, -1) per step and per other agent whose surface
    distance is :math:`d_{ij} \le m` (``min_collision_distance``, 0.005): a step function of the positions, with no
    gradient. An exact-gradient actor (SHAC) follows the goal shaping alone and runs the agents into each other; on
    BenchMARL's navigation its first step takes the return from 0.15 to -5.43, the penalty being -5.96 of it
    (``benchmarks/results/first_actor_steps.md``). This scenario adds the penalty smoothed over a width :math:`w`,
    in straight-through form, which changes the gradient and never the value:

    .. math::

        s_{ij} = \sigma\!\left(\frac{m - d_{ij}}{w}\right), \qquad
        \tilde r_i = r_i + \alpha P \sum_{j \ne i} \big(s_{ij} - \mathrm{sg}(s_{ij})\big),

    where :math:`\mathrm{sg}` stops the gradient and :math:`\sigma` is the logistic function: :math:`P s_{ij}` is
    the step :math:`P\,[d_{ij} \le m]` blurred over about :math:`w`, so its gradient pushes two agents apart, most
    strongly at :math:`d_{ij} = m` (slope :math:`|P|/4w`) and fading within a few :math:`w` of it. The value of
    :math:`\tilde r` equals VMAS's bit for bit (the added term is exactly 0); with ``collision_coef=0`` or
    ``collisions=False`` the gradient is exactly VMAS's.

    Keyword Args (to ``make_world``, i.e. passed through ``vmas.make_env`` / ``VmasEnv``):
        collision_coef (float): :math:`\alpha`. Defaults to 1.0.
        collision_width (float): :math:`w`; ``None`` (default) for a quarter of the agents' radius (BenchMARL's
            0.1: 0.025, a slope of 10 per unit of distance at contact against the goal shaping's 1). SHAC on
            BenchMARL's navigation, 123k frames: 0.79 ± 0.05 with a quarter radius (4 seeds), 0.53 ± 0.23 with half
            (4), -0.35 with a whole one, 0.61 with 0.005, -0.48 without the gradient (2 seeds each;
            ``benchmarks/results/learning_vs_mappo/navigation_smoothed_penalty/``).
        **kwargs: VMAS navigation's own (``n_agents``, ``collisions``, ``agent_collision_penalty``,
            ``agent_radius``, ...).

    Examples:
        >>> from torchrl.envs.libs.vmas import VmasEnv
        >>> env = VmasEnv(scenario=DifferentiableNavigation(), num_envs=32, n_agents=3, grad_enabled=True)
    """

    def make_world(self, batch_dim: int, device: torch.device, **kwargs) -> World:
        self.collision_coef = float(kwargs.pop("collision_coef", 1.0))
        width = kwargs.pop("collision_width", None)
        world = super().make_world(batch_dim, device, **kwargs)
        self.collision_width = 0.25 * self.agent_radius if width is None else float(width)
        if self.collision_width <= 0:
            raise ValueError(
                f"collision_width={self.collision_width} must be > 0: it is the width of the smoothed step."
            )
        return world

    def reward(self, agent: Agent) -> Tensor:
        reward = super().reward(agent)  # agent 0's call computes every agent's terms
        if not (self.collisions and self.collision_coef != 0 and self.agent_collision_penalty != 0):
            return reward
        if agent == self.world.agents[0]:
            self._collision_graphs()
        return reward + self.collision_coef * self.agent_collision_penalty * agent.collision_graph

    def _collision_graphs(self) -> None:
        """:math:`\\sum_{j \\ne i} (s_{ij} - \\mathrm{sg}(s_{ij}))` for every agent :math:`i`: value 0, gradient of the
        smoothed step."""
        for a in self.world.agents:
            a.collision_graph = torch.zeros(self.world.batch_dim, device=self.world.device)
        for i, a in enumerate(self.world.agents):
            for b in self.world.agents[:i]:
                # Not world.collides, which is False unless the two overlap somewhere in the batch.
                if a.collides(b) and b.collides(a):
                    step = torch.sigmoid(
                        (self.min_collision_distance - self.world.get_distance(a, b)) / self.collision_width
                    )
                    graph = step - step.detach()
                    a.collision_graph = a.collision_graph + graph
                    b.collision_graph = b.collision_graph + graph
