"""The per-window update of SHAC, SHAC+ and SHAC++: actor steps, graph cut, value targets, caches, cool-down."""

from torchrl_shacpp.trainers.cooldown import CoolDown
from torchrl_shacpp.trainers.factory import Learners, make_actor_loss, make_learners
from torchrl_shacpp.trainers.learned import LearnedModel, reward_items, value_items, world_items
from torchrl_shacpp.trainers.sources import (
    GradientSource,
    LearnedRewardGradient,
    LearnedWorldGradient,
    SimulatorGradient,
)
from torchrl_shacpp.trainers.window_update import GroupUpdate, WindowUpdate, actor_objective

__all__ = [
    "CoolDown",
    "GradientSource",
    "GroupUpdate",
    "LearnedModel",
    "Learners",
    "LearnedRewardGradient",
    "LearnedWorldGradient",
    "SimulatorGradient",
    "WindowUpdate",
    "actor_objective",
    "make_actor_loss",
    "make_learners",
    "reward_items",
    "value_items",
    "world_items",
]
