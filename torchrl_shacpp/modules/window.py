"""Adapting a one-pass world model to the window contract of the SHAC++ losses."""

from __future__ import annotations

from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torch import Tensor, nn


class _OnePassWindow(nn.Module):
    """``(observation [*B, T, n, o], action [*B, T, n, a]) -> (ô_{0..T-1}, ô_{1..T})``, reading ``o_0`` only."""

    def __init__(self, world_model: nn.Module) -> None:
        super().__init__()
        self.world_model = world_model

    def forward(self, observation: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        predicted = self.world_model(observation[..., 0, :, :], action)  # [*B, T + 1, n, o]
        return predicted[..., :-1, :, :], predicted[..., 1:, :, :]


def window_world_model(
    world_model: nn.Module,
    *,
    observation_key: NestedKey = ("agents", "observation"),
    action_key: NestedKey = ("agents", "action"),
) -> TensorDictModule:
    r"""Wraps a one-pass world model into the module that :class:`~torchrl_shacpp.objectives.SHACActorLoss` and
    :class:`~torchrl_shacpp.objectives.WorldModelLoss` expect.

    ``world_model`` maps the first observation :math:`o_0` (``[*B, n_agents, obs_dim]``) and an action sequence
    :math:`a_{0..T-1}` (``[*B, T, n_agents, action_dim]``) to :math:`\hat o_{0..T}` (``[*B, T + 1, n_agents,
    obs_dim]``), as :class:`~torchrl_shacpp.modules.AxisAttentionWorldModel` does. The returned module reads a
    ``[*B, T]`` window's observations (``[*B, T, n_agents, obs_dim]``, of which only the first step is used) and
    actions, and writes

    * :math:`\hat o_{0..T-1}` under ``observation_key`` and
    * :math:`\hat o_{1..T}` under ``("next", *observation_key)``,

    so that a window's ``(observation, next observation)`` pairs become predicted ones. The predictions never see
    a reset inside the window: the losses count each environment's first episode segment only.

    Args:
        world_model (nn.Module): ``(initial_obs, actions) -> predicted observations``, see above.

    Keyword Args:
        observation_key (NestedKey): the observation entry, read and written (also under ``"next"``). Defaults
            to ``("agents", "observation")``.
        action_key (NestedKey): the action entry. Defaults to ``("agents", "action")``.

    Examples:
        >>> world = window_world_model(AxisAttentionWorldModel(obs_dim, action_dim, horizon=32))
        >>> loss = WorldModelLoss(world)
        >>> loss.set_keys(observation=("agents", "observation"))
    """
    observation_key = (observation_key,) if isinstance(observation_key, str) else tuple(observation_key)
    return TensorDictModule(
        _OnePassWindow(world_model),
        in_keys=[observation_key, action_key],
        out_keys=[observation_key, ("next", *observation_key)],
    )
