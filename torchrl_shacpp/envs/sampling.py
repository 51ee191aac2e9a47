"""VMAS sampling, made safe for autograd, with a fast reset and an optional look-ahead gradient."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import MultivariateNormal
from vmas.scenarios.sampling import Scenario as SamplingScenario
from vmas.simulator.core import Agent, World
from vmas.simulator.utils import X, Y

# Grid points evaluated at once in a full reset (points × envs); bounds the memory of the vectorised normalisation.
_DENSITY_CHUNK = 2**18


class DifferentiableSampling(SamplingScenario):
    r"""VMAS ``sampling`` with the same reward values, safe to backpropagate through, and with a fast reset.

    VMAS 1.5.2's reward for agent :math:`i` at position :math:`x_i` is already a function of the continuous
    position, :math:`v_i = m\,f(x_i)/f_{\max}` with :math:`f = \sum_k \mathcal N(\cdot\,; \mu_k, \sigma^2 I)` and
    :math:`m \in \{0, 1\}` zero on an already visited grid cell or out of bounds, so its gradient is
    :math:`m\,\nabla f(x_i)/f_{\max}`. This subclass changes no value; it changes how they are computed:

    * ``sample`` no longer clamps ``agent.state.pos`` in place (it reads a clamped copy), and its mask is applied
      out of place. The one observable effect of VMAS's in-place clamp, spawn positions clamped to the world
      bounds at reset, is reproduced explicitly in :meth:`reset_world_at`.
    * ``reset_world_at`` gives ``max_pdf`` a fresh tensor before VMAS writes ``max_pdf[env_index]`` in place:
      earlier rewards saved ``max_pdf`` for backward (``v / max_pdf``), so the in-place write made any backward
      through a rollout with a per-env reset fail.
    * ``nomrlize_pdf`` (VMAS's spelling), which computes :math:`f_{\max}` as the maximum of :math:`f` over the
      grid points, is vectorised. VMAS loops over the 1600 points in Python for a full reset (seconds) and
      evaluates all envs to reset one. Both paths here lay the computation out as VMAS does (one right-hand side
      per triangular solve for a full reset, all points at once for one env), which reproduces VMAS's values bit
      for bit.

    Optional look-ahead gradient (``lookahead_coef`` :math:`\beta > 0`, off by default). The true reward has zero
    gradient on a visited cell, and an agent moving less than a cell per step spends most steps in one, so most
    steps carry no gradient. The look-ahead adds, in straight-through form (value 0),

    .. math::

        \beta\,\big[\hat G(x_i) - \mathrm{sg}\,\hat G(x_i)\big], \qquad
        G_c = \frac{f(\text{centre}_c)}{f_{\max}}\,(1 - \mathrm{visited}_c),

    where :math:`\hat G` reads the value grid :math:`G` (after this step's visits) at the continuous position by
    bilinear interpolation between cell centres: its gradient points towards high-density unvisited neighbour
    cells. It is off by default because it is a heuristic that biases the pathwise gradient; it is not needed for
    the gradient to exist. When on, every reset also evaluates the density at the cell centres (about twice the
    reset time).

    Keyword Args (to ``make_world``, i.e. passed through ``vmas.make_env`` / ``VmasEnv``):
        lookahead_coef (float): :math:`\beta`. Defaults to 0.0.
        **kwargs: VMAS sampling's own (``n_agents``, ``shared_rew``, ``n_gaussians``, ``cov``, ...).
    """

    def make_world(self, batch_dim: int, device: torch.device, **kwargs) -> World:
        self.lookahead_coef = float(kwargs.pop("lookahead_coef", 0.0))
        world = super().make_world(batch_dim, device, **kwargs)
        self.cell_values = torch.zeros(batch_dim, self.n_x_cells, self.n_y_cells, device=device)
        return world

    def reset_world_at(self, env_index: int | None = None) -> None:
        self.max_pdf = self.max_pdf.clone()  # VMAS writes max_pdf[env_index]; earlier rewards saved the old tensor
        super().reset_world_at(env_index)
        # VMAS's in-place clamp in ``sample`` pulled the spawn positions into the world bounds; do it explicitly.
        bound = torch.tensor([self.world.x_semidim, self.world.y_semidim], device=self.world.device)
        for agent in self.world.agents:
            agent.state.pos = agent.state.pos.clamp(-bound, bound)

    def sample(self, pos: Tensor, update_sampled_flag: bool = False, norm: bool = True) -> Tensor:
        """Normalised density at ``pos`` ([B, 2]) on unvisited in-bound cells, 0 elsewhere; VMAS's, out of place."""
        out_of_bounds = (
            (pos[:, X] < -self.xdim) | (pos[:, X] > self.xdim) | (pos[:, Y] < -self.ydim) | (pos[:, Y] > self.ydim)
        )
        pos = torch.stack(
            [
                pos[:, X].clamp(-self.world.x_semidim, self.world.x_semidim),
                pos[:, Y].clamp(-self.world.y_semidim, self.world.y_semidim),
            ],
            dim=-1,
        )
        cell = self._cell_index(pos)
        value = torch.stack([gaussian.log_prob(pos).exp() for gaussian in self.gaussians], dim=-1).sum(-1)
        if norm:
            value = value / self.max_pdf
        envs = torch.arange(self.world.batch_dim, device=self.world.device)
        value = torch.where(self.sampled[envs, cell[:, X], cell[:, Y]] | out_of_bounds, 0.0, value)
        if update_sampled_flag:
            self.sampled[envs, cell[:, X], cell[:, Y]] = True
        return value

    def _cell_index(self, pos: Tensor) -> Tensor:
        index = pos / self.grid_spacing
        offset = torch.tensor([self.n_x_cells / 2, self.n_y_cells / 2], device=pos.device)
        return (index + offset).to(torch.long)

    def nomrlize_pdf(self, env_index: int | None = None) -> None:
        """Sets ``max_pdf`` (per env: max of the mixture density over the grid points) and the look-ahead grid."""
        corners = self._grid(centres=False).clamp(
            torch.tensor([-self.x_semidim, -self.y_semidim], device=self.world.device),
            torch.tensor([self.x_semidim, self.y_semidim], device=self.world.device),
        )
        if env_index is None:
            self.max_pdf = self._density_all_envs(corners).amax(0)
        else:
            self.max_pdf[env_index] = self._density_one_env(corners, env_index).max()
        if self.lookahead_coef != 0:
            centres = self._grid(centres=True)
            if env_index is None:
                values = self._density_all_envs(centres) / self.max_pdf
                self.cell_values = values.T.reshape(self.world.batch_dim, self.n_x_cells, self.n_y_cells)
            else:
                values = self._density_one_env(centres, env_index) / self.max_pdf[env_index]
                self.cell_values[env_index] = values.reshape(self.n_x_cells, self.n_y_cells)

    def _grid(self, centres: bool) -> Tensor:
        """[n_x·n_y, 2] grid points, x-major: VMAS's cell corners (``arange(-dim, dim, spacing)``) or cell centres."""
        shift = self.grid_spacing / 2 if centres else 0.0
        device = self.world.device
        xs = torch.arange(-self.xdim, self.xdim, self.grid_spacing, device=device) + shift
        ys = torch.arange(-self.ydim, self.ydim, self.grid_spacing, device=device) + shift
        return torch.stack(torch.meshgrid(xs, ys, indexing="ij"), dim=-1).reshape(-1, 2)

    def _density_all_envs(self, points: Tensor) -> Tensor:
        """[P, B] mixture density at every point for every env, one triangular solve per (point, env) as VMAS."""
        batch = self.world.batch_dim
        chunks = []
        for chunk in points.split(max(1, _DENSITY_CHUNK // batch)):
            shape = (chunk.shape[0], batch)
            chunks.append(
                sum(
                    MultivariateNormal(
                        gaussian.loc.expand(*shape, -1),
                        scale_tril=gaussian.scale_tril.expand(*shape, -1, -1),
                        validate_args=False,
                    )
                    .log_prob(chunk[:, None].expand(*shape, -1))
                    .exp()
                    for gaussian in self.gaussians
                )
            )
        return torch.cat(chunks)

    def _density_one_env(self, points: Tensor, env_index: int) -> Tensor:
        """[P] mixture density of env ``env_index`` at every point (all points in one solve, as VMAS)."""
        return sum(
            MultivariateNormal(
                gaussian.loc[env_index], scale_tril=gaussian.scale_tril[env_index], validate_args=False
            )
            .log_prob(points)
            .exp()
            for gaussian in self.gaussians
        )

    def reward(self, agent: Agent) -> Tensor:
        if agent == self.world.agents[0]:
            super().reward(agent)  # samples every agent's cell, marks it visited, sums the shared reward
            if self.lookahead_coef != 0:
                for a in self.world.agents:
                    lookahead = self.value_grid_at(a.state.pos)
                    a.sample = a.sample + self.lookahead_coef * (lookahead - lookahead.detach())
                self.sampling_rew = torch.stack([a.sample for a in self.world.agents], dim=-1).sum(-1)
        return self.sampling_rew if self.shared_rew else agent.sample

    def value_grid_at(self, pos: Tensor) -> Tensor:
        """[B] bilinear read of the unvisited value grid at ``pos`` (cell centres are the interpolation nodes)."""
        grid = (self.cell_values * ~self.sampled).transpose(1, 2)[:, None]  # [B, 1, y, x] for grid_sample
        where = pos / torch.tensor([self.xdim, self.ydim], device=pos.device)  # [-1, 1] spans the grid's outer edges
        return F.grid_sample(grid, where[:, None, None], align_corners=False, padding_mode="border")[:, 0, 0, 0]
