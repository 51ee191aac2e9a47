"""BenchMARL models usable by every BenchMARL algorithm: the agent-set transformer (``model=layers/transformer``) and
the slot-set network (``model=layers/slot_set``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import torch
from benchmarl.models.common import Model, ModelConfig, parse_model_config
from tensordict import TensorDictBase
from torch import nn

from torchrl_shacpp.benchmarl.configs import CONFIG_DIR, read_config
from torchrl_shacpp.benchmarl.validation import check_slot_set_config, check_transformer_config
from torchrl_shacpp.modules import AgentSetTransformer, SlotSet
from torchrl_shacpp.modules.slots import holds_whole_slots


def input_features(model: Model) -> int:
    """Features per agent of ``model``'s inputs, all input keys concatenated."""
    return sum(spec.shape[-1] for spec in model.input_spec.values(True, True))


def concatenated_inputs(model: Model, tensordict: TensorDictBase) -> torch.Tensor:
    """``model``'s input keys read from ``tensordict`` and concatenated: ``[*batch, n_agents, features]``."""
    return torch.cat([tensordict.get(key) for key in model.in_keys], dim=-1)


class Transformer(Model):
    r"""Permutation-equivariant transformer over a group's agents (:class:`~torchrl_shacpp.modules.AgentSetTransformer`).

    Each agent is one token: the concatenation of its input features (all input keys, each
    ``[*batch, n_agents, features]``). One post-norm encoder layer stack attends across the agents, with no agent
    positional embedding, so permuting the agents permutes the outputs. As for BenchMARL's GNN, the agents
    communicate: a *decentralised* model (a policy) gives agent :math:`j` the output of token :math:`j`, which
    depends on every agent's input through attention. Then:

    * ``share_params=True``: one transformer for all agents; when also ``centralised`` (a shared centralised
      critic), its token outputs are mean-pooled into one output without the agent dimension, as BenchMARL expects.
    * ``share_params=False``: one transformer per agent; agent :math:`j` takes token :math:`j` of its own
      transformer, or its mean over tokens when ``centralised``.

    Inputs without the agent dimension (a global state) have no tokens to attend over: use another critic model.

    Args:
        num_layers: encoder layers (paper: 1).
        num_heads: attention heads (paper: 1).
        hidden_size: token features (paper: 64).
        feedforward_size: feed-forward features (paper: 128).
        dropout: dropout probability (paper: 0.1 in the policy, 0 elsewhere). BenchMARL never switches a policy to
            ``eval()``, so a positive value also applies during evaluation.
        head_init_scale: scales the output layer's initial weights (1: PyTorch's init; 0.01 starts a policy's mean
            action near 0, :class:`~torchrl_shacpp.modules.AgentSetTransformer`).
    """

    def __init__(
        self,
        num_layers: int,
        num_heads: int,
        hidden_size: int,
        feedforward_size: int,
        dropout: float,
        head_init_scale: float,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        in_features = input_features(self)
        out_features = self.output_leaf_spec.shape[-1]
        self.transformers = nn.ModuleList(
            AgentSetTransformer(
                in_features,
                out_features,
                hidden_size=hidden_size,
                feedforward_size=feedforward_size,
                num_layers=num_layers,
                num_heads=num_heads,
                dropout=dropout,
                head_init_scale=head_init_scale,
            ).to(self.device)
            for _ in range(1 if self.share_params else self.n_agents)
        )

    def _perform_checks(self) -> None:
        super()._perform_checks()
        if not self.input_has_agent_dim:
            raise ValueError(
                "The transformer attends over the agent dimension, and this input has none (a global state, as in "
                "a centralised critic on a task with a state). Choose another critic model, e.g. "
                "model@critic_model=layers/mlp."
            )
        for key, spec in self.input_spec.items(True, True):
            if len(spec.shape) != 2 or spec.shape[0] != self.n_agents:
                raise ValueError(
                    f"Transformer inputs must be [n_agents={self.n_agents}, features]; {key!r} has shape "
                    f"{tuple(spec.shape)}."
                )
        if self.output_has_agent_dim and self.output_leaf_spec.shape[-2] != self.n_agents:
            raise ValueError(
                f"The transformer's output spec must be [n_agents={self.n_agents}, features]; got "
                f"{tuple(self.output_leaf_spec.shape)}."
            )

    def _forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        tokens = concatenated_inputs(self, tensordict)
        if self.share_params:
            output = self.transformers[0](tokens)
            if self.centralised:
                output = output.mean(-2)
        else:
            per_agent = [
                transformer(tokens).mean(-2) if self.centralised else transformer(tokens)[..., agent, :]
                for agent, transformer in enumerate(self.transformers)
            ]
            output = torch.stack(per_agent, dim=-2)
        tensordict.set(self.out_key, output)
        return tensordict


@dataclass
class TransformerConfig(ModelConfig):
    """Configuration of :class:`Transformer`; the defaults are the paper's (App. B.2)."""

    num_layers: int = 1
    num_heads: int = 1
    hidden_size: int = 64
    feedforward_size: int = 128
    dropout: float = 0.0
    head_init_scale: float = 1.0

    def __post_init__(self) -> None:
        check_transformer_config(self)

    @staticmethod
    def associated_class() -> type[Transformer]:
        return Transformer

    @classmethod
    def get_from_yaml(cls, path: str | None = None) -> TransformerConfig:
        """Loads the config from ``path``, by default this package's ``model/layers/transformer.yaml``."""
        if path is None:
            path = CONFIG_DIR / "model" / "layers" / "transformer.yaml"
        return cls(**parse_model_config(read_config(path)))


class SlotSetModel(Model):
    r"""Each agent's output from its own observation read as entity slots (:class:`~torchrl_shacpp.modules.SlotSet`):
    :math:`y^i = \rho\big(\max_k \phi([s^i; e^i_k])\big)`, one :math:`\phi` for every slot.

    The network the slot critic (``algorithm.critic_slots``) uses, offered to every BenchMARL algorithm as a policy
    or a per-agent critic, so that MAPPO can be given the same policy as SHAC++. The observation (all input keys
    concatenated, ``[*batch, n_agents, features]``) is ``slots[0]`` own features then slots of ``slots[1]``
    (dispersion: ``[4, 3]``). Agents do not communicate: agent :math:`i`'s output reads its own observation only.

    Args:
        slots: ``[own_features, slot_features]``.
        hidden_size: features of the pooled slot encoding.
        num_cells: hidden sizes of :math:`\phi` and of :math:`\rho`.
    """

    def __init__(self, slots: List[int], hidden_size: int, num_cells: List[int], **kwargs) -> None:
        # Set before Model.__init__, whose _perform_checks reads them.
        self.own_features, self.slot_features = slots
        super().__init__(**kwargs)
        self.network = SlotSet(
            self.own_features, self.slot_features, self.n_agents, out_features=self.output_leaf_spec.shape[-1],
            share_params=self.share_params, hidden_size=hidden_size, num_cells=num_cells,
        ).to(self.device)  # fmt: skip

    def _perform_checks(self) -> None:
        super()._perform_checks()
        if not self.input_has_agent_dim or self.centralised:
            raise ValueError(
                "model=layers/slot_set gives each agent an output from its own observation; it cannot be a "
                "centralised critic (MAPPO's): choose another critic model, e.g. model@critic_model=layers/mlp or "
                "model@critic_model=layers/transformer."
            )
        features = input_features(self)
        if not holds_whole_slots(features, self.own_features, self.slot_features):
            raise ValueError(
                f"model.slots=[{self.own_features}, {self.slot_features}] splits an observation into "
                f"{self.own_features} own features and slots of {self.slot_features}, but the model's inputs hold "
                f"{features} features, whose last {features - self.own_features} are not a whole number of slots: "
                "give the task's layout (dispersion: [4, 3])."
            )

    def _forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        observation = concatenated_inputs(self, tensordict)
        tensordict.set(self.out_key, self.network(observation))
        return tensordict


@dataclass
class SlotSetModelConfig(ModelConfig):
    """Configuration of :class:`SlotSetModel`; the sizes are the slot critic's. ``slots`` has no default: it is the
    task's observation layout."""

    slots: Optional[List[int]] = None
    hidden_size: int = 256
    num_cells: List[int] = field(default_factory=lambda: [256])

    def __post_init__(self) -> None:
        check_slot_set_config(self)

    @staticmethod
    def associated_class() -> type[SlotSetModel]:
        return SlotSetModel

    @classmethod
    def get_from_yaml(cls, path: str | None = None) -> SlotSetModelConfig:
        """Loads the config from ``path``, by default this package's ``model/layers/slot_set.yaml``."""
        if path is None:
            path = CONFIG_DIR / "model" / "layers" / "slot_set.yaml"
        return cls(**parse_model_config(read_config(path)))
