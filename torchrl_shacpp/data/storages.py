"""A lazily allocated tensor storage whose slots may be written in any order."""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

import torch
from torchrl.data import LazyTensorStorage


class ScatteredTensorStorage(LazyTensorStorage):
    """A :class:`~torchrl.data.LazyTensorStorage` that a writer may fill at any slots, in any order.

    TorchRL's tensor storages assume that the written slots are a prefix ``[0, len)``: ``len`` counts writes and
    ``get`` reads from the first ``len`` slots. A writer that scatters items over fixed blocks (the
    return-stratified cache, :class:`~torchrl_shacpp.data.StratifiedWriter`) breaks both, so this storage keeps a
    per-slot *written* mask instead:

    * ``len(storage)`` is the number of distinct written slots;
    * an index names a slot, and reading a slot that was never written raises ``IndexError`` (its memory is
      uninitialised); a slice selects the written slots within its range, so ``storage[:]`` is all stored data;
    * :class:`~torchrl.data.RandomSampler` draws uniformly among the written slots, and
      :class:`~torchrl_shacpp.data.WrittenSlotSampler` visits them in shuffled passes;
    * the mask is saved by :meth:`state_dict` and :meth:`dumps`.

    Items are stored along the first dimension only; an item may itself be batched (e.g. a ``[T]`` window).

    Args:
        max_size (int): the number of slots.

    Keyword Args:
        device (torch.device or str, optional): where the data and the mask live. Defaults to ``"cpu"``.
            ``"auto"`` is not supported, as the mask is allocated up front.

    Examples:
        >>> storage = ScatteredTensorStorage(10)
        >>> storage.set(torch.tensor([7, 2]), TensorDict({"x": torch.ones(2)}, [2]))
        >>> len(storage), storage.written_slots()
        (2, tensor([2, 7]))
    """

    def __init__(self, max_size: int, *, device: torch.device | str = "cpu") -> None:
        if device == "auto":
            raise ValueError(
                f"{type(self).__name__} needs an explicit device: its written-slot mask is allocated up front."
            )
        super().__init__(max_size, device=device)
        self._written = torch.zeros(self.max_size, dtype=torch.bool, device=self.device)

    def written_slots(self) -> torch.Tensor:
        """The indices of the written slots, in ascending order."""
        return self._written.nonzero().squeeze(-1)

    def _as_slots(self, index: Any) -> int | torch.Tensor:
        # Replay buffers pass ints, slices, numpy arrays (``ReplayBuffer.__getitem__``) or tensors on any device.
        if _is_int(index):
            return int(index)
        if isinstance(index, slice):
            return torch.arange(self.max_size, device=self.device)[index]
        return torch.as_tensor(index, dtype=torch.long, device=self.device)

    def set(self, cursor: Any, data: Any, *, set_cursor: bool = True) -> None:
        # The parent's length counts writes, which overcounts when slots are rewritten: count the mask instead.
        slots = self._as_slots(cursor)
        super().set(slots, data, set_cursor=False)
        if set_cursor:
            self._last_cursor = slots  # read by the checkpointer's save hooks
        self._written[slots] = True
        self._len = int(self._written.sum())

    def get(self, index: Any) -> Any:
        if not self.initialized:
            raise RuntimeError("Cannot get elements out of a non-initialized storage.")
        slots = self._as_slots(index)
        if isinstance(index, slice):
            slots = slots[self._written[slots]]
        elif not self._written[slots].all():
            raise IndexError(f"{type(self).__name__}: reading slot(s) that were never written.")
        return self._storage[slots]

    def _rand_given_ndim(self, batch_size: int) -> torch.Tensor:
        # RandomSampler draws through this method: draw among the written slots only.
        slots = self.written_slots()
        return slots[torch.randint(slots.numel(), (batch_size,), generator=self._rng, device=self.device)]

    def contains(self, item: Any) -> bool | torch.Tensor:
        if _is_int(item):
            return -self.max_size <= item < self.max_size and bool(self._written[item])
        return self._written[self._as_slots(item)]

    def _empty(self) -> None:
        super()._empty()
        self._written.zero_()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "_written": self._written.clone()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._written.copy_(state_dict["_written"])

    def dumps(self, path: str | Path) -> None:
        super().dumps(path)
        torch.save(self._written.cpu(), Path(path) / "written.pt")

    def loads(self, path: str | Path) -> None:
        super().loads(path)
        self._written.copy_(torch.load(Path(path) / "written.pt"))


def _is_int(index: Any) -> bool:
    """Whether ``index`` names one slot (a Python, numpy or 0-d tensor integer)."""
    if isinstance(index, torch.Tensor):
        return index.ndim == 0 and not index.is_floating_point() and index.dtype != torch.bool
    return isinstance(index, numbers.Integral) and not isinstance(index, bool)
