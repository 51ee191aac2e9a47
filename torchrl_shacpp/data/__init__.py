"""Return-stratified caches on TorchRL replay-buffer storage."""

from torchrl_shacpp.data.cache import make_stratified_cache
from torchrl_shacpp.data.finite import finite_items
from torchrl_shacpp.data.samplers import WrittenSlotSampler
from torchrl_shacpp.data.storages import ScatteredTensorStorage
from torchrl_shacpp.data.writers import StratifiedWriter

__all__ = ["ScatteredTensorStorage", "StratifiedWriter", "WrittenSlotSampler", "finite_items", "make_stratified_cache"]
