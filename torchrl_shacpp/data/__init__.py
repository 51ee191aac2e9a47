"""Return-stratified caches on TorchRL replay-buffer storage, and the cool-down schedule of the learned models."""

from torchrl_shacpp.data.cache import make_stratified_cache
from torchrl_shacpp.data.cooldown import CoolDown
from torchrl_shacpp.data.learned import LearnedModel, reward_items, value_items, world_items
from torchrl_shacpp.data.samplers import WrittenSlotSampler
from torchrl_shacpp.data.storages import ScatteredTensorStorage
from torchrl_shacpp.data.writers import StratifiedWriter

__all__ = [
    "CoolDown",
    "LearnedModel",
    "ScatteredTensorStorage",
    "StratifiedWriter",
    "WrittenSlotSampler",
    "make_stratified_cache",
    "reward_items",
    "value_items",
    "world_items",
]
