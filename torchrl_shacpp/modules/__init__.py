"""Neural networks for SHAC-family algorithms, as plain ``nn.Module`` s on ``[*batch, n_agents, features]``
tensors (wrap them in :class:`~tensordict.nn.TensorDictModule` to read and write tensordict keys)."""

from torchrl_shacpp.modules.actor import (
    ClampedNormal, clamped_normal_log_prob, gaussian_actor, sampling_distribution_params,
)
from torchrl_shacpp.modules.attention import AgentSelfAttention, AxisSelfAttention, axis_attention_mask
from torchrl_shacpp.modules.reward import RewardModel, SlotSumReward, TransformerRewardModel
from torchrl_shacpp.modules.slots import SlotSet
from torchrl_shacpp.modules.transformer import AgentSetTransformer, EncoderLayer
from torchrl_shacpp.modules.world_model import (
    WORLD_ROLLOUTS,
    AxisAttentionWorldModel,
    PeriodicFeatures,
    TransitionWorldModel,
    check_detached_features,
    spliced_world_model,
    transition_world_model,
    window_world_model,
)

__all__ = [
    "WORLD_ROLLOUTS",
    "AgentSelfAttention",
    "AgentSetTransformer",
    "AxisAttentionWorldModel",
    "AxisSelfAttention",
    "ClampedNormal",
    "EncoderLayer",
    "RewardModel",
    "SlotSet",
    "SlotSumReward",
    "TransformerRewardModel",
    "PeriodicFeatures",
    "TransitionWorldModel",
    "axis_attention_mask",
    "check_detached_features",
    "clamped_normal_log_prob",
    "sampling_distribution_params",
    "gaussian_actor",
    "spliced_world_model",
    "transition_world_model",
    "window_world_model",
]
