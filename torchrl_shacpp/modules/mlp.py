"""The paper's MLP variant: one network over all agents' concatenated inputs, one output per agent."""

from __future__ import annotations

from torch import Tensor, nn


class JointMLP(nn.Module):
    r"""One MLP over the joint input of all agents, emitting a separate output for every agent.

    ``[*batch, n_agents, in_features] -> [*batch, n_agents, out_features]``:

    .. math::

        y = \operatorname{reshape}_{n \times o}\Big(W_2\,
            \operatorname{Drop}\big(\operatorname{ReLU}(W_1 [x_1; \dots; x_n] + b_1)\big) + b_2\Big),

    i.e. agent :math:`j`'s output is a function of every agent's input, through weights specific to the
    position :math:`j` (the paper's MLP for policy, value and reward, App. B.1; the authors' "all-for-one" MLP).
    The number of agents is fixed at construction and the model is **not** permutation-equivariant.

    This is not TorchRL's :class:`~torchrl.modules.MultiAgentMLP` with ``centralized=True, share_params=True``:
    that network maps the concatenated input to ONE ``out_features`` vector and broadcasts it to every agent
    (identical outputs). ``centralized=True, share_params=False`` gives per-agent outputs but with ``n_agents``
    separate MLPs (``n_agents`` times the parameters); here one hidden layer is shared by all agents' outputs.

    Args:
        n_agents: number of agents.
        in_features: per-agent input features.
        out_features: per-agent output features.

    Keyword Args:
        hidden_size: hidden features. Defaults to ``32 * n_agents`` (the paper's 32 / 96 / 160 for 1 / 3 / 5
            agents).
        dropout: dropout probability after the hidden activation (paper: 0.1 for the policy, else 0.0).
            Defaults to 0.0.
    """

    def __init__(
        self,
        n_agents: int,
        in_features: int,
        out_features: int,
        *,
        hidden_size: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.n_agents = n_agents
        hidden_size = 32 * n_agents if hidden_size is None else hidden_size
        self.net = nn.Sequential(
            nn.Linear(n_agents * in_features, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, n_agents * out_features),
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2] != self.n_agents:
            raise ValueError(f"Expected {self.n_agents} agents on dim -2, got input of shape {tuple(x.shape)}.")
        return self.net(x.flatten(-2)).unflatten(-1, (self.n_agents, -1))
