"""The writer of the return-stratified caches."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from tensordict import is_tensor_collection, TensorDictBase
from tensordict.utils import NestedKey
from torchrl.data.replay_buffers.storages import Storage
from torchrl.data.replay_buffers.writers import Writer

from torchrl_shacpp.checks import check_count
from torchrl_shacpp.data.storages import ScatteredTensorStorage


class StratifiedWriter(Writer):
    r"""Writes each item to a random slot of the block of its score bin, so that rare scores are never crowded out.

    The storage's :math:`C` slots are cut into :math:`k` contiguous blocks, block :math:`b` being the slots
    :math:`[\lfloor bC/k \rfloor, \lfloor (b+1)C/k \rfloor)`. When :math:`k` does not divide :math:`C` the blocks
    differ by one slot (the :math:`C \bmod k` larger ones spread evenly), so every slot is used. For a batch of
    items with scores :math:`s_i`:

    1. the running extremes take the batch in first: :math:`m \leftarrow \min(m, \min_i s_i)`,
       :math:`M \leftarrow \max(M, \max_i s_i)`;
    2. the score is min-max normalised, :math:`\hat s_i = (s_i - m) / (M - m)` (0 while :math:`M = m`);
    3. its bin is :math:`b_i = \operatorname{round}(\hat s_i (k - 1))`;
    4. it goes to a uniformly random slot of block :math:`b_i`, replacing what was there.

    Each bin thus keeps its share :math:`C/k` of the cache whatever the score distribution: a flood of common
    (usually low-return) items only replaces items of their own bins, and the few high-return items survive.
    Items are binned once, on arrival, against the extremes known then. When several items of one batch draw
    the same slot the last one is kept, as if they had been written one after the other.

    An item's score is ``data[score_key]`` summed over every dimension but the first: over agents for a
    transition or a λ-target, over steps and agents for a ``[T]`` window. The caller may also write any score it
    likes under ``score_key`` before extending.

    With a uniform share :math:`\rho > 0` the first :math:`U = \lfloor \rho C \rfloor` slots are kept out of the
    bins: each item goes, with probability :math:`\rho`, to a uniformly random slot of them, and otherwise to its
    bin's block as above, the :math:`k` blocks cutting the other :math:`C - U` slots. That part of the cache is
    plain random replacement, a sample of the recent items in their own proportions, so a uniform minibatch draws
    about :math:`\rho` of its items as the data stream has them and the rest stratified. Stratification alone
    gives a common score the share of one bin however common it is, which fits the model worst where the policy
    spends most of its time (``benchmarks/results/shacpp_gradient_alignment.md``: wheel, navigation).

    Args:
        num_bins (int): :math:`k \geq 1` (paper: 25 for the world cache, 9 for the reward and value caches).
            ``1`` gives plain random replacement.

    Keyword Args:
        score_key (NestedKey, optional): where the items' scores are read. Defaults to ``"score"``.
        uniform_share (float, optional): :math:`\rho \in [0, 1)`, the share of the slots kept for random
            replacement. Defaults to ``0`` (the paper's cache).

    The storage must be a :class:`~torchrl_shacpp.data.ScatteredTensorStorage` with at least ``num_bins`` slots.
    """

    def __init__(self, num_bins: int, *, score_key: NestedKey = "score", uniform_share: float = 0.0) -> None:
        check_count("num_bins", num_bins, hint="1 gives plain random replacement (paper: 25 or 9).")
        if not 0.0 <= uniform_share < 1.0:
            raise ValueError(
                f"uniform_share={uniform_share} must be in [0, 1): it is the share of the cache kept for random "
                "replacement (0: the paper's stratified cache)."
            )
        super().__init__()
        self.num_bins = num_bins
        self.score_key = score_key
        self.uniform_share = uniform_share
        self._empty()

    @property
    def score_range(self) -> tuple[float, float]:
        """The running extremes :math:`(m, M)` of the scores seen so far (``(inf, -inf)`` before any)."""
        return self._score_min, self._score_max

    def register_storage(self, storage: Storage) -> None:
        if not isinstance(storage, ScatteredTensorStorage):
            raise TypeError(
                f"{type(self).__name__} scatters items over the whole storage and needs a ScatteredTensorStorage, "
                f"got {type(storage).__name__} (TorchRL's tensor storages assume the written slots are a prefix)."
            )
        if storage.max_size < self.num_bins:
            raise ValueError(
                f"A cache of {storage.max_size} slots cannot hold {self.num_bins} bins: the capacity must be at least "
                "the number of bins."
            )
        uniform_slots = self._uniform_slots(storage.max_size)
        if self.uniform_share > 0 and not 1 <= uniform_slots <= storage.max_size - self.num_bins:
            raise ValueError(
                f"A uniform share of {self.uniform_share} of {storage.max_size} slots leaves {uniform_slots} slots for "
                f"random replacement and {storage.max_size - uniform_slots} for {self.num_bins} bins: each needs at "
                "least one slot; raise the capacity or change the share."
            )
        super().register_storage(storage)

    def add(self, data: TensorDictBase) -> int:
        return int(self.extend(data.unsqueeze(0))[0])

    def extend(self, data: TensorDictBase) -> torch.Tensor:
        """Writes the items of ``data`` (its first dimension) and returns the slot each was written to."""
        if not is_tensor_collection(data):
            raise TypeError(f"{type(self).__name__} reads scores from tensordicts, got {type(data).__name__}.")
        if not len(data):
            return torch.empty(0, dtype=torch.long, device=self._storage.device)
        scores = data.get(self.score_key).detach().reshape(len(data), -1).sum(-1)
        self._update_extremes(scores)
        slots = self._draw_slots(self._bins(scores))
        # Keep the last of the items that drew the same slot: a scattered write with repeated indices is
        # unordered on GPU and may even mix the leaves of two items.
        order = torch.arange(len(slots), device=slots.device)
        last = torch.full((self._storage.max_size,), -1, dtype=torch.long, device=slots.device)
        keep = last.scatter_reduce_(0, slots, order, "amax")[slots] == order
        self._storage.set(slots[keep], data[keep])
        self._write_count += len(data)
        return slots

    def _update_extremes(self, scores: torch.Tensor) -> None:
        low, high = torch.stack(torch.aminmax(scores)).tolist()
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"{type(self).__name__}: the scores under {self.score_key!r} must be finite.")
        self._score_min = min(self._score_min, low)
        self._score_max = max(self._score_max, high)

    def _bins(self, scores: torch.Tensor) -> torch.Tensor:
        span = self._score_max - self._score_min
        scale = (self.num_bins - 1) / span if span > 0 else 0.0
        # The clamp only absorbs rounding at the ends of the range.
        return ((scores - self._score_min) * scale).round().long().clamp_(0, self.num_bins - 1)

    def _uniform_slots(self, capacity: int) -> int:
        r""":math:`U = \lfloor \rho C \rfloor`, the slots kept out of the bins."""
        return int(self.uniform_share * capacity)

    def _draw_slots(self, bins: torch.Tensor) -> torch.Tensor:
        uniform_slots = self._uniform_slots(self._storage.max_size)
        capacity, k = self._storage.max_size - uniform_slots, self.num_bins
        bounds = uniform_slots + torch.arange(k + 1, device=bins.device) * capacity // k
        start, size = bounds[bins], bounds[bins + 1] - bounds[bins]
        # Blocks hold q or q + 1 slots, and q (q + 1) is a multiple of both: the offset is exactly uniform.
        q = capacity // k
        offset = torch.randint(q * (q + 1), bins.shape, generator=self._rng, device=bins.device) % size
        slots = start + offset
        if uniform_slots:
            to_uniform_part = torch.rand(bins.shape, generator=self._rng, device=bins.device) < self.uniform_share
            uniform_part_slots = torch.randint(uniform_slots, bins.shape, generator=self._rng, device=bins.device)
            slots = torch.where(to_uniform_part, uniform_part_slots, slots)
        return slots

    def _empty(self, empty_write_count: bool = True) -> None:
        self._score_min, self._score_max = math.inf, -math.inf
        if empty_write_count:
            self._write_count = 0

    def state_dict(self) -> dict[str, Any]:
        return {"score_min": self._score_min, "score_max": self._score_max, "write_count": self._write_count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._score_min = state_dict["score_min"]
        self._score_max = state_dict["score_max"]
        self._write_count = state_dict["write_count"]

    def dumps(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(exist_ok=True)
        with open(path / "metadata.json", "w") as file:
            json.dump(self.state_dict(), file)  # json writes the initial infinities as Infinity

    def loads(self, path: str | Path) -> None:
        with open(Path(path) / "metadata.json") as file:
            self.load_state_dict(json.load(file))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_bins={self.num_bins}, score_key={self.score_key!r}, "
            f"uniform_share={self.uniform_share}, score_range={self.score_range})"
        )
