"""Which items of a batch hold only finite values."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase


def finite_items(tensordict: TensorDictBase, batch_dims: int = 1) -> torch.Tensor:
    """Whether each item of ``tensordict`` (an index over its first ``batch_dims`` dimensions) holds finite values only.

    Every floating-point leaf counts (integer and boolean leaves are always finite); an item with a NaN or an infinity
    anywhere, e.g. at one step of a ``[T]`` window item, is not finite.

    Returns:
        a boolean tensor of shape ``tensordict.batch_size[:batch_dims]``.
    """
    shape = tensordict.batch_size[:batch_dims]
    finite = torch.ones(shape, dtype=torch.bool, device=tensordict.device)
    for leaf in tensordict.values(include_nested=True, leaves_only=True):
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point():
            finite = finite.to(leaf.device) & torch.isfinite(leaf.detach()).reshape(*shape, -1).all(-1)
    return finite
