"""Networks on observations laid out as the agent's own features then entity slots, one network for every slot."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchrl.modules import MultiAgentMLP


def is_slot_layout(own_features: int, slot_features: int) -> bool:
    """Whether ``[own_features, slot_features]`` is a layout: no negative own features, no empty slots."""
    return own_features >= 0 and slot_features >= 1


def holds_whole_slots(obs_dim: int, own_features: int, slot_features: int) -> bool:
    """Whether an observation of ``obs_dim`` features is ``own_features`` then a whole number (at least 1) of slots."""
    entities = obs_dim - own_features
    return entities >= slot_features and entities % slot_features == 0


def split_slots(obs: Tensor, own_features: int, slot_features: int) -> tuple[Tensor, Tensor]:
    """``obs`` ``[*batch, n_agents, obs_dim]`` split into the agent's own features ``[*batch, n_agents, own_features]``
    and its entity slots ``[*batch, n_agents, K, slot_features]``."""
    if not holds_whole_slots(obs.shape[-1], own_features, slot_features):
        raise ValueError(
            f"An observation of {obs.shape[-1]} features does not hold {own_features} own features and slots of "
            f"{slot_features}: its last {obs.shape[-1] - own_features} features must be a whole number (at least 1) "
            "of slots."
        )
    return obs[..., :own_features], obs[..., own_features:].unflatten(-1, (-1, slot_features))


def slot_tokens(own: Tensor, slots: Tensor) -> Tensor:
    """One token per slot, ``[*batch, K, n_agents, own + slot features]``, from the agent's own features ``own``
    ``[*batch, n_agents, own]`` and its slots ``[*batch, n_agents, K, slot]``. The slots go to the batch, before the
    agents, where the per-agent MLPs (TorchRL's ``MultiAgentMLP``) read them at dim -2."""
    own = own.unsqueeze(-2).expand(*slots.shape[:-1], -1)
    return torch.cat([own, slots], dim=-1).transpose(-2, -3)


def check_slot_layout(own_features: int, slot_features: int) -> None:
    """Refuses a layout with negative own features or empty slots."""
    if not is_slot_layout(own_features, slot_features):
        raise ValueError(
            f"own_features must be at least 0 and slot_features at least 1; got {own_features} and {slot_features}."
        )


def slot_mlp(
    in_features: int, out_features: int, n_agents: int, *, share_params: bool, num_cells: Sequence[int],
    activation_class: type[nn.Module],
) -> MultiAgentMLP:
    """A per-agent MLP on ``[*batch, n_agents, in_features]`` (one for all agents with ``share_params``)."""
    return MultiAgentMLP(
        n_agent_inputs=in_features, n_agent_outputs=out_features, n_agents=n_agents, centralised=False,
        share_params=share_params, num_cells=list(num_cells), activation_class=activation_class,
    )  # fmt: skip


class SlotSet(nn.Module):
    r"""Each agent's output from its own state and the set of its observation's entity slots (PointNet's pooling):
    :math:`y^i = \rho\big(\max_{k=1}^{K} \phi([s^i; e^i_k])\big)`, the maximum taken feature by feature.

    The observation is read as :math:`o^i = [s^i; e^i_1; \dots; e^i_K]` (see
    :class:`~torchrl_shacpp.modules.SlotSumReward`). One :math:`\phi` encodes every slot, so what is learned of one
    entity holds for the others, and :math:`y^i` does not depend on the slots' order. As a value (``out_features=1``,
    the slot critic): unlike a reward, a value is not a sum over the entities; dispersion's depends most on the
    nearest uneaten food, which a maximum over the slots holds directly. On the distance to the nearest of 4 uneaten
    slots (``tests/test_modules.py``) the maximum's fit was within 0.2% of the value's variance after 600 steps, a
    sum's (DeepSets) within 22%. As a policy (``model=layers/slot_set``), the action towards the nearest uneaten
    entity is the same kind of function.

    Args:
        own_features: features of :math:`s^i` at the start of the observation.
        slot_features: features of each slot :math:`e^i_k`.
        n_agents: agents of the group (the inputs' ``-2`` dimension).

    Keyword Args:
        out_features: features of :math:`y^i`. Defaults to 1 (a value).
        share_params: one :math:`\phi, \rho` for all agents (``False``: one per agent). Defaults to ``True``.
        hidden_size: features of :math:`\phi`'s output, the pooled encoding. Defaults to 256.
        num_cells: hidden sizes of :math:`\phi` and of :math:`\rho`. Defaults to ``[256]``.
        activation_class: their activation. Defaults to :class:`~torch.nn.ReLU`.
    """

    def __init__(
        self,
        own_features: int,
        slot_features: int,
        n_agents: int,
        *,
        out_features: int = 1,
        share_params: bool = True,
        hidden_size: int = 256,
        num_cells: Sequence[int] = (256,),
        activation_class: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        check_slot_layout(own_features, slot_features)
        self.own_features, self.slot_features = own_features, slot_features
        sizes = dict(share_params=share_params, num_cells=num_cells, activation_class=activation_class)
        self.encode_slot = slot_mlp(own_features + slot_features, hidden_size, n_agents, **sizes)
        self.head = slot_mlp(hidden_size, out_features, n_agents, **sizes)

    def forward(self, obs: Tensor) -> Tensor:
        """``obs``: ``[*batch, n_agents, obs_dim]``. Returns ``[*batch, n_agents, out_features]``."""
        tokens = slot_tokens(*split_slots(obs, self.own_features, self.slot_features))
        return self.head(self.encode_slot(tokens).amax(dim=-3))
