"""VMAS transport with a gradient before the first agent-package contact."""

from __future__ import annotations

import torch
from torch import Tensor
from vmas.scenarios.transport import Scenario as TransportScenario
from vmas.simulator.core import Agent, Landmark, World


class DifferentiableTransport(TransportScenario):
    r"""VMAS ``transport``, whose reward keeps VMAS's values and gains a gradient before contact.

    VMAS's shared reward is the package-to-goal shaping :math:`r_t = 100\,(\lVert p_{t-1}-g\rVert -
    \lVert p_t-g\rVert)` while the package is off the goal (0 on it). It is differentiable w.r.t. the actions only
    through agent-package contact forces, and VMAS prunes the agent-package collision pair while no env of the
    batch has contact, so until a first contact the reward has no graph at all. This scenario adds an
    *approach* potential in straight-through form, which changes the gradient and never the value:

    .. math::

        \Phi_t = -\sum_{i} \sqrt{\lVert x_{i,t} - \tau_{i,t}\rVert^2 + \kappa^2}, \qquad
        \tau_{i,t} = \mathrm{sg}\begin{cases} h_t = p_t - c\,u_t & \text{if } (x_{i,t} - p_t)\cdot u_t < -c/2
        \text{ (behind the package)},\\
        p_t - c\,u_t + 2c\,\sigma_{i,t}\, u^\perp_t & \text{otherwise (a waypoint beside it)},\end{cases}

        \tilde r_t = r_t + \alpha\,(1 - \mathrm{on\_goal}_t)\,\big[(\Phi_t - \Phi_{t-1}) -
        \mathrm{sg}(\Phi_t - \Phi_{t-1})\big],

    summed over packages, where :math:`\mathrm{sg}` stops the gradient, :math:`u = (g-p)/\lVert g-p\rVert`,
    :math:`u^\perp` its normal, :math:`\sigma_i = \pm 1` the side of :math:`u^\perp` agent :math:`i` is on, and
    :math:`c = \tfrac12 \min(l, w) + r_a` (package side :math:`\min(l, w)`, agent radius :math:`r_a`).
    :math:`h` is the *push point*: where an agent's centre sits when it pushes the package's face towards the
    goal. An agent on the goal side of the package is first led to a waypoint beside it: heading straight for
    :math:`h` would run it into the package and push the package away from the goal (a scripted controller
    following :math:`\nabla\Phi` earns a mean return of -3.1 with the straight target and +0.9 with the
    waypoint, transport n=3, 256 envs, 200 steps). The targets are detached, so the term only steers agents and
    never drags the package. The pseudo-Huber distance (:math:`\kappa = r_a`) has unit gradient far from its
    target and fades within an agent radius of it, so a pushing agent is not jittered by the approach term.
    After a reset, :math:`\Phi_{t-1}` of the reset envs carries no graph, like VMAS's ``global_shaping``.

    The value of :math:`\tilde r` equals VMAS's bit for bit (the added term is exactly 0). With
    ``approach_coef=0`` the gradient is exactly VMAS's.

    Why :math:`\alpha = 1` by default: a single agent (mass 1) pushing the package (mass 50) moves it by about
    1/51 of what the same force moves a free agent, so the task gradient per unit of agent displacement is about
    :math:`100 / 51 \approx 2`, and the approach gradient (unit slope per agent) is about half of it: strong
    enough to bring the agents to the package from across the arena within a window, weaker than the pushing
    gradient once they are there.

    Keyword Args (to ``make_world``, i.e. passed through ``vmas.make_env`` / ``VmasEnv``):
        approach_coef (float): :math:`\alpha`. Defaults to 1.0.
        **kwargs: VMAS transport's own (``n_agents``, ``n_packages``, ``package_width``, ``package_length``,
            ``package_mass``).

    Examples:
        >>> from torchrl.envs.libs.vmas import VmasEnv
        >>> env = VmasEnv(scenario=DifferentiableTransport(), num_envs=32, n_agents=3, grad_enabled=True)
    """

    def make_world(self, batch_dim: int, device: torch.device, **kwargs) -> World:
        self.approach_coef = float(kwargs.pop("approach_coef", 1.0))
        world = super().make_world(batch_dim, device, **kwargs)
        self.push_offset = 0.5 * min(self.package_length, self.package_width) + self.agent_radius
        return world

    def reset_world_at(self, env_index: int | None = None) -> None:
        super().reset_world_at(env_index)
        for package in self.packages:
            # The graph part Φ - sg(Φ) of the previous potential: its value is always 0; a reset env restarts
            # without a graph to its previous episode (out of place: the old tensor may be saved for backward).
            fresh = torch.zeros(self.world.batch_dim, device=self.world.device)
            if env_index is None:
                package.approach_graph = fresh
            else:
                reset = torch.arange(self.world.batch_dim, device=self.world.device) == env_index
                package.approach_graph = torch.where(reset, fresh, package.approach_graph)

    def reward(self, agent: Agent) -> Tensor:
        reward = super().reward(agent)  # computed once, for agent 0, and shared
        if agent == self.world.agents[0] and self.approach_coef != 0:
            self.rew = reward = reward + self.approach_coef * sum(
                self._approach_gradient(package) for package in self.packages
            )
        return reward

    @torch.no_grad()
    def _approach_target(self, package: Landmark, position: Tensor) -> Tensor:
        """:math:`\\tau`: the push point for an agent behind the package, else a waypoint beside the package."""
        to_goal = package.goal.state.pos - package.state.pos
        direction = to_goal / torch.linalg.vector_norm(to_goal, dim=-1, keepdim=True).clamp_min(1e-6)
        normal = torch.stack([-direction[:, 1], direction[:, 0]], dim=-1)
        push_point = package.state.pos - self.push_offset * direction
        relative = position - package.state.pos
        behind = (relative * direction).sum(-1, keepdim=True) < -0.5 * self.push_offset
        side = torch.where((relative * normal).sum(-1, keepdim=True) < 0, -1.0, 1.0)
        return torch.where(behind, push_point, push_point + 2 * self.push_offset * side * normal)

    def _approach_gradient(self, package: Landmark) -> Tensor:
        """:math:`(1 - \\mathrm{on\\_goal})\\,[\\Delta\\Phi - \\mathrm{sg}(\\Delta\\Phi)]` for one package: value 0."""
        potential = -sum(
            (((a.state.pos - self._approach_target(package, a.state.pos)) ** 2).sum(-1) + self.agent_radius**2).sqrt()
            for a in self.world.agents
        )
        graph = potential - potential.detach()
        gradient = (graph - package.approach_graph) * ~package.on_goal
        package.approach_graph = graph
        return gradient
