"""Learned per-agent reward models :math:`R_\\theta(o_t, a_t[, o_{t+1}]) \\to r_t`."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from torchrl_shacpp.modules.transformer import AgentSetTransformer


class RewardModel(nn.Module):
    r"""Per-agent reward :math:`\hat r_{t} = g([o_t; a_t])` (or :math:`g([o_t; a_t; o_{t+1}])`) on
    ``[*batch, n_agents, features]`` tensors.

    Concatenates each agent's observation, action and (if ``use_next_obs``) next observation into one
    per-agent vector and applies ``net`` (``[*batch, n_agents, in] -> [*batch, n_agents, 1]``), which mixes the
    agents. :class:`TransformerRewardModel` builds the paper's transformer (the BenchMARL algorithms build theirs from the
    ``critic_model`` config, MLP or transformer).

    Args:
        net: the network on the concatenated per-agent inputs; ``in_features`` must be
            :meth:`in_features` ``(obs_dim, action_dim, use_next_obs)``.
        use_next_obs: whether :math:`o_{t+1}` is an input. The authors' transformer reward model reads
            :math:`(o_t, a_t)` only, and so do we by default: a model reading :math:`o_{t+1}` can read a sparse
            reward off the event it causes (dispersion's "eaten" flags), so the actor's gradient runs through the
            predicted flags instead of the agents' motion (``benchmarks/results/dispersion/``). When ``False``, a
            ``next_obs`` passed to :meth:`forward` is ignored.
    """

    def __init__(self, net: nn.Module, use_next_obs: bool = False) -> None:
        super().__init__()
        self.net = net
        self.use_next_obs = use_next_obs

    @staticmethod
    def in_features(obs_dim: int, action_dim: int, use_next_obs: bool) -> int:
        """Per-agent input features of ``net``."""
        return (2 if use_next_obs else 1) * obs_dim + action_dim

    def forward(self, obs: Tensor, action: Tensor, next_obs: Tensor | None = None) -> Tensor:
        """``obs``, ``next_obs``: ``[*batch, n_agents, obs_dim]``; ``action``: ``[*batch, n_agents, action_dim]``.

        Returns the per-agent reward, ``[*batch, n_agents, 1]``.
        """
        inputs = [obs, action]
        if self.use_next_obs:
            if next_obs is None:
                raise ValueError("This reward model reads next_obs (use_next_obs=True) but none was given.")
            inputs.append(next_obs)
        return self.net(torch.cat(inputs, dim=-1))


class TransformerRewardModel(RewardModel):
    """:class:`RewardModel` whose network is an :class:`AgentSetTransformer` (one token per agent; permutation
    equivariant; any number of agents). Defaults: the paper's 1 layer, 1 head, hidden 64, feed-forward 128,
    dropout 0.

    Args:
        obs_dim: per-agent observation features.
        action_dim: per-agent action features.

    Keyword Args:
        use_next_obs: whether :math:`o_{t+1}` is an input. Defaults to ``False``.
        hidden_size, feedforward_size, num_layers, num_heads, dropout: see :class:`AgentSetTransformer`.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        *,
        use_next_obs: bool = False,
        hidden_size: int = 64,
        feedforward_size: int = 128,
        num_layers: int = 1,
        num_heads: int = 1,
        dropout: float = 0.0,
    ) -> None:
        net = AgentSetTransformer(
            self.in_features(obs_dim, action_dim, use_next_obs),
            1,
            hidden_size=hidden_size,
            feedforward_size=feedforward_size,
            num_layers=num_layers,
            num_heads=num_heads,
            dropout=dropout,
        )
        super().__init__(net, use_next_obs)
