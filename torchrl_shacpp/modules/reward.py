"""Learned per-agent reward models :math:`R_\\theta(o_t, a_t[, o_{t+1}]) \\to r_t`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from torchrl_shacpp.modules.slots import check_slot_layout, slot_mlp, slot_tokens, split_slots
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


class SlotSumReward(nn.Module):
    r"""Each agent's reward as a sum over the entity slots of its observation:
    :math:`\hat r^i = \sum_{k=1}^{K} g([s^i; a^i; e^i_k])`.

    The observation is read as :math:`o^i = [s^i; e^i_1; \dots; e^i_K]`: ``own_features`` of the agent's own state
    :math:`s^i`, then :math:`K` slots of ``slot_features`` each, one per entity (dispersion: position and velocity,
    then each food's offset and eaten flag, ``own_features=4, slot_features=3``). One network :math:`g` scores
    every slot, so what it learns of one food holds for the others, and the sum is invariant to the slots' order: a
    reward that adds up per entity (a food eaten, a landmark covered) is learned once instead of once per slot. An
    MLP on the whole observation learned dispersion n=3's reward ~10x more slowly than n=1's
    (``benchmarks/results/dispersion/``). With ``next_observation``, :math:`s^i` and each :math:`e^i_k` are paired
    with their next values.

    Args:
        own_features: features of :math:`s^i` at the start of the observation.
        slot_features: features of each slot :math:`e^i_k`; the rest of the observation must be a whole number of
            slots.
        action_dim: features of :math:`a^i`.
        n_agents: agents of the group (the inputs' ``-2`` dimension).

    Keyword Args:
        use_next_obs: whether :math:`o_{t+1}` is an input. Defaults to ``False``.
        share_params: one :math:`g` for all agents (``False``: one per agent). Defaults to ``True``.
        num_cells: hidden sizes of :math:`g`. Defaults to BenchMARL's MLP's, ``[256, 256]``.
        activation_class: activation of :math:`g`. Defaults to :class:`~torch.nn.ReLU`: on dispersion n=3's
            rewards (a disc around each food) it reached a held-out correlation of 0.48 / 0.61 after 1,000 / 3,000
            steps where :class:`~torch.nn.Tanh`, BenchMARL's MLP's, reached 0.07 / 0.41
            (``benchmarks/results/dispersion/``).
    """

    def __init__(
        self,
        own_features: int,
        slot_features: int,
        action_dim: int,
        n_agents: int,
        *,
        use_next_obs: bool = False,
        share_params: bool = True,
        num_cells: Sequence[int] = (256, 256),
        activation_class: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        check_slot_layout(own_features, slot_features)
        self.own_features, self.slot_features, self.use_next_obs = own_features, slot_features, use_next_obs
        steps = 2 if use_next_obs else 1
        self.slot_score = slot_mlp(
            steps * (own_features + slot_features) + action_dim, 1, n_agents, share_params=share_params,
            num_cells=num_cells, activation_class=activation_class,
        )

    def forward(self, obs: Tensor, action: Tensor, next_obs: Tensor | None = None) -> Tensor:
        """``obs``, ``next_obs``: ``[*batch, n_agents, obs_dim]``; ``action``: ``[*batch, n_agents, action_dim]``.

        Returns the per-agent reward, ``[*batch, n_agents, 1]``.
        """
        own, slots = split_slots(obs, self.own_features, self.slot_features)
        owns = [own, action]
        if self.use_next_obs:
            if next_obs is None:
                raise ValueError("This reward model reads next_obs (use_next_obs=True) but none was given.")
            next_own, next_slots = split_slots(next_obs, self.own_features, self.slot_features)
            owns.append(next_own)
            slots = torch.cat([slots, next_slots], dim=-1)
        return self.slot_score(slot_tokens(torch.cat(owns, dim=-1), slots)).sum(dim=-3)
