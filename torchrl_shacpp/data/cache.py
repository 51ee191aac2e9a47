"""Return-stratified caches for the value, reward and world models."""

from __future__ import annotations

import torch
from tensordict.utils import NestedKey
from torchrl.data import TensorDictReplayBuffer

from torchrl_shacpp.checks import check_count
from torchrl_shacpp.data.samplers import WrittenSlotSampler
from torchrl_shacpp.data.storages import ScatteredTensorStorage
from torchrl_shacpp.data.writers import StratifiedWriter


def make_stratified_cache(
    capacity: int,
    num_bins: int,
    *,
    score_key: NestedKey = "score",
    uniform_share: float = 0.0,
    batch_size: int | None = None,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> TensorDictReplayBuffer:
    """Builds a fixed-size cache stratified by return, as a plain :class:`~torchrl.data.TensorDictReplayBuffer`.

    Each learned model of SHAC+/SHAC++ trains from such a cache (paper: 30,000 items; 25 bins for the world
    cache, 9 for the reward and value caches). ``extend`` writes the items of a tensordict (its first dimension)
    by score bin (:class:`StratifiedWriter`) into a :class:`ScatteredTensorStorage`; ``len`` counts the stored
    items; ``sample`` and iteration draw stored items only, in shuffled passes without replacement
    (:class:`WrittenSlotSampler`); ``state_dict``/``load_state_dict`` and ``dumps``/``loads`` restore the cache
    exactly, including the running score extremes and the written-slot mask.

    Args:
        capacity (int): the number of items the cache holds, at least ``num_bins``.
        num_bins (int): the number of score bins, at least 1.

    Keyword Args:
        score_key (NestedKey, optional): the entry whose sum over all but the first dimension is an item's score,
            e.g. ``("next", "agents", "reward")``. Defaults to ``"score"``, for scores the caller writes itself.
        uniform_share (float, optional): the share of the slots kept for random replacement instead of the bins
            (:class:`StratifiedWriter`). Defaults to ``0``, the paper's cache.
        batch_size (int, optional): the minibatch size of ``sample`` and of iteration (paper: 1000).
        device (torch.device or str, optional): where the cache lives. Defaults to ``"cpu"``.
        generator (torch.Generator, optional): the random generator of slot choice and sampling. Defaults to
            torch's global one.

    Examples:
        >>> cache = make_stratified_cache(30_000, 9, score_key="score", batch_size=1000)
        >>> window = window.reshape(-1)  # [B * T] transitions, each with [n_agents, ...] entries
        >>> window["score"] = window["next", "agents", "reward"].sum((-2, -1))
        >>> cache.extend(window)
        >>> for minibatch in cache:  # one shuffled pass over the cached transitions
        ...     ...
    """
    check_count("capacity", capacity, hint="It is the number of items the cache holds (paper: 30,000).")
    if batch_size is not None:
        check_count("batch_size", batch_size, hint="It is the minibatch size of sampling and iteration (paper: 1000).")
    return TensorDictReplayBuffer(
        storage=ScatteredTensorStorage(capacity, device=device),
        writer=StratifiedWriter(num_bins, score_key=score_key, uniform_share=uniform_share),
        sampler=WrittenSlotSampler(),
        batch_size=batch_size,
        generator=generator,
    )
