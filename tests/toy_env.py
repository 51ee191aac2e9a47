"""A tiny differentiable multi-agent env with closed-form gradients, for testing the window losses."""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.data import Bounded, Composite, Unbounded
from torchrl.envs import EnvBase, StepCounter, TransformedEnv


class PointMassEnv(EnvBase):
    r"""Point masses :math:`x' = x + a` with reward :math:`r = -\lVert x' \rVert^2` per agent.

    The position is internal state that carries the autograd graph, like a simulator's: :meth:`detach_state` cuts
    it (pass ``cut_graph=detach_point_masses`` to the collector). Environment ``b`` terminates on its
    ``terminate_at[b]``-th step of every episode (0 = never). Resets put every agent of the reset envs at ``start``.
    """

    def __init__(self, start: torch.Tensor, terminate_at: list[int]) -> None:
        num_envs, n_agents, dim = start.shape
        super().__init__(batch_size=torch.Size([num_envs]))
        self.start = start
        self.terminate_at = torch.tensor(terminate_at)
        self.episode_steps = torch.zeros(num_envs, dtype=torch.long)
        self.position = start.clone()
        agent_shape = (num_envs, n_agents)
        self.observation_spec = Composite(
            agents=Composite(observation=Unbounded((*agent_shape, dim)), shape=agent_shape), shape=(num_envs,)
        )
        self.action_spec = Composite(
            agents=Composite(action=Bounded(-1.0, 1.0, (*agent_shape, dim)), shape=agent_shape), shape=(num_envs,)
        )
        self.reward_spec = Composite(
            agents=Composite(reward=Unbounded((*agent_shape, 1)), shape=agent_shape), shape=(num_envs,)
        )

    def _reset(self, tensordict: TensorDictBase | None) -> TensorDictBase:
        reset = torch.ones(self.batch_size, dtype=torch.bool)
        if tensordict is not None and "_reset" in tensordict.keys():
            reset = tensordict["_reset"].reshape(self.batch_size)
        position = self.position = torch.where(reset[:, None, None], self.start, self.position)
        self.episode_steps = torch.where(reset, 0, self.episode_steps)
        done = torch.zeros((*self.batch_size, 1), dtype=torch.bool)
        return TensorDict(
            {"agents": {"observation": position}, "done": done, "terminated": done.clone()},
            batch_size=self.batch_size,
        )

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        position = self.position = self.position + tensordict["agents", "action"]
        self.episode_steps = self.episode_steps + 1
        terminated = ((self.terminate_at > 0) & (self.episode_steps == self.terminate_at)).unsqueeze(-1)
        return TensorDict(
            {
                "agents": {"observation": position, "reward": -position.pow(2).sum(-1, keepdim=True)},
                "done": terminated.clone(),
                "terminated": terminated,
            },
            batch_size=self.batch_size,
        )

    def _set_seed(self, seed: int | None) -> None:
        pass

    def detach_state(self) -> None:
        self.position = self.position.detach()


def detach_point_masses(env: TransformedEnv) -> None:
    env.base_env.detach_state()


def make_point_mass_env(start: torch.Tensor, terminate_at: list[int], max_steps: int) -> TransformedEnv:
    """The point-mass env with a time limit that sets ``truncated``."""
    return TransformedEnv(PointMassEnv(start, terminate_at), StepCounter(max_steps))


class OpenLoopPolicy(nn.Module):
    """``a_t = θ[k]`` where ``k`` counts the policy's calls: actions are leaf parameters with known gradients."""

    def __init__(self, actions: torch.Tensor) -> None:
        super().__init__()
        self.actions = nn.Parameter(actions)  # [T, B, n, d]
        self.calls = 0

    def forward(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        action = self.actions[self.calls].clone()  # a view of a leaf would require grad even under no_grad
        self.calls += 1
        return action, action


def open_loop_actor(actions: torch.Tensor) -> TensorDictModule:
    return TensorDictModule(
        OpenLoopPolicy(actions),
        in_keys=[("agents", "observation")],
        out_keys=[("agents", "action"), ("agents", "loc")],
    )


class QuadraticCritic(nn.Module):
    r""":math:`V(x) = -k \lVert x \rVert^2` per agent."""

    def __init__(self, k: float) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor(k))

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return -self.k * observation.pow(2).sum(-1, keepdim=True)


def quadratic_critic(k: float) -> TensorDictModule:
    return TensorDictModule(
        QuadraticCritic(k), in_keys=[("agents", "observation")], out_keys=[("agents", "state_value")]
    )


class QuadraticReward(nn.Module):
    r"""A reward model :math:`R(o, a, o') = -c \lVert o' \rVert^2`; with ``c = 1`` it is the point masses' reward."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(c))

    def forward(self, next_observation: torch.Tensor) -> torch.Tensor:
        return -self.c * next_observation.pow(2).sum(-1, keepdim=True)


def quadratic_reward_model(c: float) -> TensorDictModule:
    return TensorDictModule(
        QuadraticReward(c), in_keys=[("next", "agents", "observation")], out_keys=[("agents", "predicted_reward")]
    )


class CumulativeWorldModel(nn.Module):
    r"""The point masses' exact one-pass model :math:`\hat o_t = o_0 + s \sum_{u<t} a_u` (``s = 1``), on windows."""

    def __init__(self, s: float = 1.0) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.tensor(s))

    def forward(self, observation: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first = observation[:, :1]
        next_observation = first + self.s * action.cumsum(1)
        return torch.cat([first, next_observation[:, :-1]], 1), next_observation


def cumulative_world_model(s: float = 1.0) -> TensorDictModule:
    keys = [("agents", "observation"), ("agents", "action")]
    return TensorDictModule(
        CumulativeWorldModel(s), in_keys=keys, out_keys=[("agents", "observation"), ("next", "agents", "observation")]
    )
