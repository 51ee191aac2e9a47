"""The sampler of the return-stratified caches."""

from __future__ import annotations

from typing import Any

import torch
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement

from torchrl_shacpp.data.storages import ScatteredTensorStorage


class WrittenSlotSampler(SamplerWithoutReplacement):
    """Visits the written slots of a :class:`~torchrl_shacpp.data.ScatteredTensorStorage` in shuffled passes.

    A pass (an epoch) is a random permutation of the written slots cut into batches, the last one possibly short.
    A replay buffer's iterator stops at the end of a pass, so ``for batch in buffer`` visits every stored item
    exactly once. Writing to the buffer starts a new pass: a pass covers the contents as of the last write.
    Unwritten slots are never returned.
    """

    def __init__(self) -> None:
        super().__init__(drop_last=False, shuffle=True)

    def sample(self, storage: ScatteredTensorStorage, batch_size: int) -> tuple[torch.Tensor, dict]:
        # The parent permutes positions 0..len(storage)-1; position i names the i-th written slot.
        positions, info = super().sample(storage, batch_size)
        return storage.written_slots()[positions], info

    def add(self, index: Any) -> None:
        self._empty()

    def extend(self, index: Any) -> None:
        self._empty()
