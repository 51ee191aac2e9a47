"""VMAS transport with a gradient before the first agent-package contact."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from vmas.scenarios.transport import Scenario as TransportScenario
from vmas.simulator.core import Agent, Landmark, World


#: ``approach_path``: the straight line to a target (the push point, or a waypoint beside the package), or the
#: shortest way round the package.
APPROACH_PATHS = ("waypoint", "around")


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
    following :math:`\nabla\Phi` at full speed earns a mean task return of 2.4 with the straight target and 8.4
    with the waypoint, transport n=3, 256 envs, 200 steps; ``benchmarks/transport_shaping_fit.py``). The targets
    are detached, so the term only steers agents and never drags the package. The pseudo-Huber distance
    (:math:`\kappa = r_a`) has unit gradient far from its target and fades within an agent radius of it, so a
    pushing agent is not jittered by the approach term.
    After a reset, :math:`\Phi_{t-1}` of the reset envs carries no graph, like VMAS's ``global_shaping``.

    The value of :math:`\tilde r` equals VMAS's bit for bit (the added term is exactly 0). With
    ``approach_coef=0`` the gradient is exactly VMAS's.

    With ``approach_reward=True`` the term keeps its value as well, :math:`\tilde r_t = r_t + \alpha\,(1 -
    \mathrm{on\_goal}_t)\,(\Phi_t - \Phi_{t-1})`: potential-based shaping (Ng et al., 1999), which leaves the optimal
    policies unchanged and which, unlike the gradient-only form, a learned reward model can fit and any algorithm
    (MAPPO too) is paid by. It is a different reward, so VMAS's is reported beside it as the agents' info
    ``task_reward`` (BenchMARL logs it per evaluation episode through
    :class:`~torchrl_shacpp.benchmarl.callbacks.EvaluationInfo`). After a reset, :math:`\Phi_{t-1}` is the reset
    state's potential, without a graph. Paid so, the potential is learned by the SHAC family's critic too,
    :math:`V \approx c - \Phi` under a policy that approaches, whose gradient at the window's end takes the
    rewards' :math:`\partial\Phi_h/\partial a` back (measured: ``benchmarks/results/transport_bootstrap_cancellation/``);
    with ``algorithm.actor_value_gradient=0`` the actor keeps it, and with ``algorithm.critic_reward=task_reward`` (the
    critic on VMAS's return) too, though SHAC++ learned transport n=3 no sooner so
    (``benchmarks/results/learning_vs_mappo/transport_n3_64envs_shaped/``).

    The hard switch from a waypoint to the push point makes :math:`\Phi` jump (by up to :math:`2c`) where an agent
    beside the package crosses the line half-way behind it: no gradient sees that, but a reward model fitted to
    the shaped values does (under a noisy push policy 2.1% of the steps hold such a jump and over half of the
    shaping's variance, which an MLP does not fit: ``benchmarks/results/transport_shaping_fit.md``).
    ``approach_blend`` :math:`=\beta > 0` makes :math:`\Phi` continuous:
    :math:`\tau_i = h + 2c\,\mathrm{sigmoid}(a_i/\beta)\tanh(b_i/\beta)\,u^\perp` with
    :math:`a_i = (x_i - p)\cdot u + c/2` and :math:`b_i = (x_i - p)\cdot u^\perp`, the hard switch's limit as
    :math:`\beta \to 0`.

    The waypoint's straight line pulls an agent touching the package's goal face 0.89-1.00 into that face (its target
    is beside the push point, behind the package). ``approach_path="around"`` measures the way round a disc that holds
    the package and the agents touching it instead, and leads an agent on the goal face along it (into it at most the
    sine of its angle off the package-goal line). Every learner of the paid potential dips first (transport n=3:
    SHAC++ -0.94 ± 0.19 at 122k frames, MAPPO -0.20 ± 0.12) with most of its contacts pushing the goal face
    (``benchmarks/transport_contacts.py``), and SHAC++ dips as deep with ``"around"`` (-0.97 / -0.67 at 122k, 2
    seeds): the pull at the face is not what drives it (``benchmarks/results/transport_contacts.md``).

    Why :math:`\alpha = 1` by default: a single agent (mass 1) pushing the package (mass 50) moves it by about
    1/51 of what the same force moves a free agent, so the task gradient per unit of agent displacement is about
    :math:`100 / 51 \approx 2`, and the approach gradient (unit slope per agent) is about half of it: strong
    enough to bring the agents to the package from across the arena within a window, weaker than the pushing
    gradient once they are there.

    Keyword Args (to ``make_world``, i.e. passed through ``vmas.make_env`` / ``VmasEnv``):
        approach_coef (float): :math:`\alpha`. Defaults to 1.0.
        approach_reward (bool): add the approach term's value to the reward, not only its gradient. Defaults to
            ``False``.
        approach_blend (float): :math:`\beta`, the width over which the targets blend; 0 for the hard switch.
            Defaults to 0.
        approach_path (str): ``"waypoint"`` (the default, above) or ``"around"``: :math:`\Phi_t = -\sum_i
            \sqrt{L_{i,t}^2 + \kappa^2}` with :math:`L` the length of a way round the package to the push point
            (:meth:`_way_around`; ``approach_blend`` blends its two sides).
        goal_frame_observation (bool): append to each agent's observation, per package, its offset from the package
            in the package-goal frame, :math:`((x_i - p)\cdot u,\ (x_i - p)\cdot u^\perp)`: whether an agent is on
            the goal side of the package, where pushing drives it away, is then one feature's sign instead of a
            product of two of VMAS's offsets. Defaults to ``False`` (VMAS's observation). Measured on transport n=3
            with the paid potential: neither SHAC++ nor SHAC dips less for it
            (``benchmarks/results/transport_goal_face/``).
        contact_observation (bool): append to each agent's observation, per package, the gap between the agent and
            the package, :math:`\lVert x_i - q_i\rVert - r_a` with :math:`q_i` the package's point closest to the
            agent (below 0: they overlap, where VMAS's contact force acts): the contact's force is then a function of
            one feature instead of a narrow band of two. Defaults to ``False``.
        penetration_observation (bool): append to each agent's observation, per package, its overlap with the
            package in agent radii along the face's outward normal, :math:`\max(0, -g_i)\, n_i / r_a` with
            :math:`g_i` the gap above and :math:`n_i = (x_i - q_i) / \lVert x_i - q_i\rVert`: VMAS's contact force
            on the agent is a soft rectifier of :math:`-g_i` about a thousandth wide along :math:`n_i`, so this
            feature is that force up to a factor, zero apart from contact (and for an agent whose centre is inside
            the package, which has no face normal). Defaults to ``False``. Measured on
            transport n=3 with the paid potential: SHAC++'s world model then learns the contact's direction, and
            SHAC++ climbs out of its early dip sooner without solving the task sooner; MAPPO does not gain from it
            (``benchmarks/results/transport_goal_face/``, ``benchmarks/results/transport_contact_fit.md``).
        **kwargs: VMAS transport's own (``n_agents``, ``n_packages``, ``package_width``, ``package_length``,
            ``package_mass``).

    Examples:
        >>> from torchrl.envs.libs.vmas import VmasEnv
        >>> env = VmasEnv(scenario=DifferentiableTransport(), num_envs=32, n_agents=3, grad_enabled=True)
    """

    def make_world(self, batch_dim: int, device: torch.device, **kwargs) -> World:
        self.approach_coef = float(kwargs.pop("approach_coef", 1.0))
        self.approach_reward = bool(kwargs.pop("approach_reward", False))
        self.approach_blend = float(kwargs.pop("approach_blend", 0.0))
        self.approach_path = str(kwargs.pop("approach_path", "waypoint"))
        self.goal_frame_observation = bool(kwargs.pop("goal_frame_observation", False))
        self.contact_observation = bool(kwargs.pop("contact_observation", False))
        self.penetration_observation = bool(kwargs.pop("penetration_observation", False))
        if not self.approach_blend >= 0:
            raise ValueError(
                f"approach_blend={self.approach_blend} is not a width: use 0 for the hard switch between the approach "
                "targets, or a positive width to blend them (e.g. 0.05, an agent radius)."
            )
        if self.approach_path not in APPROACH_PATHS:
            raise ValueError(
                f"approach_path={self.approach_path!r} is not one of {APPROACH_PATHS}: 'waypoint' for the straight "
                "line to the push point or to a waypoint beside the package, 'around' for the shortest way round it."
            )
        world = super().make_world(batch_dim, device, **kwargs)
        self.push_offset = 0.5 * min(self.package_length, self.package_width) + self.agent_radius
        self.package_radius = 0.5 * math.hypot(self.package_length, self.package_width) + self.agent_radius
        return world

    def reset_world_at(self, env_index: int | None = None) -> None:
        super().reset_world_at(env_index)
        if env_index is None:  # the info of a reset, before any reward: nothing earned yet
            self.task_reward = torch.zeros(self.world.batch_dim, device=self.world.device)
        for package in self.packages:
            # The previous potential's part that enters the reward, Φ or its graph part Φ - sg(Φ) (value 0); a
            # reset env restarts without a graph to its previous episode (out of place: the old tensor may be saved
            # for backward).
            if self.approach_reward:
                fresh = self._approach_potential(package).detach()
            else:
                fresh = torch.zeros(self.world.batch_dim, device=self.world.device)
            if env_index is None:
                package.previous_approach = fresh
            else:
                reset = torch.arange(self.world.batch_dim, device=self.world.device) == env_index
                package.previous_approach = torch.where(reset, fresh, package.previous_approach)

    def reward(self, agent: Agent) -> Tensor:
        reward = super().reward(agent)  # computed once, for agent 0, and shared
        if agent == self.world.agents[0]:
            self.task_reward = reward.detach()
            if self.approach_coef != 0:
                self.rew = reward = reward + self.approach_coef * sum(
                    self._approach_term(package) for package in self.packages
                )
        return reward

    @staticmethod
    def _goal_frame(package: Landmark) -> tuple[Tensor, Tensor]:
        """:math:`u`, the unit vector from the package to its goal, and its normal :math:`u^\\perp`, each [B, 2]."""
        to_goal = package.goal.state.pos - package.state.pos
        direction = to_goal / torch.linalg.vector_norm(to_goal, dim=-1, keepdim=True).clamp_min(1e-6)
        return direction, torch.stack([-direction[:, 1], direction[:, 0]], dim=-1)

    @torch.no_grad()
    def _approach_target(self, package: Landmark, position: Tensor) -> Tensor:
        """:math:`\\tau`: the push point for an agent behind the package, else a waypoint beside the package."""
        direction, normal = self._goal_frame(package)
        push_point = package.state.pos - self.push_offset * direction
        relative = position - package.state.pos
        along = (relative * direction).sum(-1, keepdim=True) + 0.5 * self.push_offset  # < 0: behind the package
        across = (relative * normal).sum(-1, keepdim=True)
        if self.approach_blend > 0:  # the waypoint's weight and side, smooth over a width β
            beside = torch.sigmoid(along / self.approach_blend) * torch.tanh(across / self.approach_blend)
        else:
            beside = torch.where(along < 0, 0.0, torch.where(across < 0, -1.0, 1.0))
        return push_point + 2 * self.push_offset * beside * normal

    def observation(self, agent: Agent) -> Tensor:
        """VMAS's observation, then per package with ``goal_frame_observation`` the agent's offset from it in the
        package-goal frame, with ``contact_observation`` its gap to it and with ``penetration_observation`` its
        overlap with it."""
        observation = super().observation(agent)
        extra = []
        for package in self.packages:
            relative = agent.state.pos - package.state.pos
            if self.goal_frame_observation:
                direction, normal = self._goal_frame(package)
                extra += [(relative * direction).sum(-1, keepdim=True), (relative * normal).sum(-1, keepdim=True)]
            if self.contact_observation or self.penetration_observation:
                # The box is axis-aligned (VMAS's transport package does not rotate).
                half = torch.tensor([package.shape.length, package.shape.width], device=relative.device) / 2
                outside = relative - torch.maximum(torch.minimum(relative, half), -half)
                distance = torch.linalg.vector_norm(outside, dim=-1, keepdim=True)
                gap = distance - self.agent_radius
                if self.contact_observation:
                    extra.append(gap)
                if self.penetration_observation:
                    # Inside the box ``outside`` is 0 with a zero gradient: no normal, the feature 0.
                    normal = outside / distance.clamp_min(1e-9)
                    extra.append((-gap).clamp_min(0) / self.agent_radius * normal)
        return torch.cat([observation, *extra], dim=-1)

    def info(self, agent: Agent) -> dict[str, Tensor]:
        """VMAS's reward as ``task_reward`` where the approach term adds to the reward's value; else VMAS's info."""
        return {"task_reward": self.task_reward} if self.approach_reward else super().info(agent)

    def _approach_potential(self, package: Landmark, positions: Sequence[Tensor] | None = None) -> Tensor:
        """:math:`\\Phi` for one package, at the agents' positions or at ``positions`` (one [B, 2] per agent)."""
        if positions is None:
            positions = [agent.state.pos for agent in self.world.agents]
        if self.approach_path == "around":
            return -sum((self._way_around(package, x) ** 2 + self.agent_radius**2).sqrt() for x in positions)
        return -sum(
            (((x - self._approach_target(package, x)) ** 2).sum(-1) + self.agent_radius**2).sqrt() for x in positions
        )

    def _way_around(self, package: Landmark, position: Tensor) -> Tensor:
        r""":math:`L`: how far ``position`` ([B, 2]) is from the push point :math:`h = p - c\,u` along a way round
        the package: round the disc of radius :math:`R` (half the package's diagonal plus the agent radius, so that the
        disc holds every point where an agent touches the package) to its rim's point :math:`h_R = p - R\,u` behind the
        package, then straight in to :math:`h`. With :math:`\rho = \lVert x - p\rVert` (taken as :math:`R` inside the
        disc), :math:`\theta \in [0, \pi]` the angle between :math:`x - p` and :math:`-u`, :math:`t = \sqrt{\rho^2
        - R^2}` and :math:`\alpha = \arctan(t / R)` (where the tangent from :math:`x` touches the rim), the way round
        the nearer side is :math:`L_1 = \lVert x - h_R\rVert` where :math:`h_R` is in view (:math:`\theta \le
        \alpha`), else the tangent and the arc, :math:`t + R\,(\theta - \alpha)`; the other side's is :math:`L_2 =
        t + R\,(2\pi - \theta - \alpha)`; they blend over ``approach_blend`` :math:`\beta`, :math:`-\beta \log(e^{
        -L_1/\beta} + e^{-L_2/\beta})` (their minimum for :math:`\beta = 0`), and

        .. math::

            L = \operatorname{softmin}_\beta(L_1, L_2) + (R - c) - (R - \min(\rho, R))\,\max(\cos\theta, 0)^2,

        so that an agent touching the package is led along the rim (round the corners, along the faces) and pressed
        in only behind it (the last term, 0 at the sides and in front; :math:`L = 0` at :math:`h`). The package and
        its goal are detached: the term steers agents only."""
        centre = package.state.pos.detach()
        to_goal = package.goal.state.pos.detach() - centre
        direction = to_goal / torch.linalg.vector_norm(to_goal, dim=-1, keepdim=True).clamp_min(1e-6)
        relative = position - centre
        distance = (relative**2).sum(-1).add(1e-12).sqrt()
        rim = self.package_radius
        on_rim = relative * (rim / distance).clamp_min(1.0).unsqueeze(-1)  # inside the disc: on its rim
        back = -(on_rim * direction).sum(-1)
        across = on_rim[:, 1] * direction[:, 0] - on_rim[:, 0] * direction[:, 1]
        angle = torch.atan2(across, back).abs()
        # t and alpha kept off the square root's infinite slope at the rim.
        tangent = ((on_rim**2).sum(-1) - rim**2).clamp_min(0.0).add(1e-6).sqrt()
        alpha = torch.atan2(tangent, torch.full_like(tangent, rim))
        straight = ((on_rim + rim * direction) ** 2).sum(-1).add(1e-12).sqrt()
        near_way = torch.where(angle <= alpha, straight, tangent + rim * (angle - alpha))
        far_way = tangent + rim * (2 * math.pi - angle - alpha)
        if self.approach_blend == 0:
            round_the_rim = torch.minimum(near_way, far_way)
        else:
            ways = torch.stack([near_way, far_way], dim=-1)
            round_the_rim = -self.approach_blend * torch.logsumexp(-ways / self.approach_blend, dim=-1)
        pressed_in = (rim - distance).clamp_min(0.0) * torch.cos(angle).clamp_min(0.0) ** 2
        return round_the_rim + (rim - self.push_offset) - pressed_in

    def _approach_term(self, package: Landmark) -> Tensor:
        """:math:`(1 - \\mathrm{on\\_goal})\\,\\Delta\\Phi` for one package, or its graph part
        :math:`\\Delta\\Phi - \\mathrm{sg}(\\Delta\\Phi)` (value 0) without ``approach_reward``."""
        potential = self._approach_potential(package)
        paid = potential if self.approach_reward else potential - potential.detach()
        term = (paid - package.previous_approach) * ~package.on_goal
        package.previous_approach = paid
        return term
