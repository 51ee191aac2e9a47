"""Shape and episode-boundary helpers shared by the window losses."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn


def expand_like(flag: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    """Broadcast an env-level flag ``[*B, T, 1]`` to the reward's shape ``[*B, T, *A, 1]``.

    Multi-agent environments (VMAS) report ``done``/``terminated`` once per environment but rewards per
    agent; TorchRL's value estimators need every input to share one shape.
    """
    while flag.ndim < reward.ndim:
        flag = flag.unsqueeze(-2)
    return flag.expand_as(reward)


def window_end_as_done(done: torch.Tensor, time_dim: int) -> torch.Tensor:
    """Return a copy of ``done`` with the last step of the window marked as a trajectory end.

    A window is a slice of longer episodes: its last transition is cut by the window, not by the task, so
    every return computed inside the window must stop there and bootstrap from the value of the next
    observation (a truncation).
    """
    done = done.clone()
    done.select(time_dim, -1).fill_(True)
    return done


def check_window(tensordict: TensorDictBase, who: str) -> int:
    """Check that ``tensordict`` is a ``[*B, T]`` window and return the index of its time dimension.

    The time dimension is the one named ``"time"`` (as set by :class:`~torchrl_shacpp.collectors.WindowCollector`
    and TorchRL rollouts), otherwise the last of at least two batch dimensions (``[B, T]``, as BenchMARL's
    collectors give). A single unnamed dimension is refused: it is what flattening a window
    (``window.reshape(-1)``) or taking one step of every env (``window[:, 0]``) leaves, and reading it as time would
    chain the returns of different envs.
    """
    names = tensordict.names
    if "time" in names:
        return names.index("time")
    if tensordict.batch_dims < 2:
        raise ValueError(
            f"{who} needs a window of transitions shaped [*envs, time]; got batch_size "
            f"{tuple(tensordict.batch_size)} with no dimension named 'time'. A flattened batch (window.reshape(-1)) "
            "or one step of each env (window[:, 0]) is not a window: pass the [B, T] window before flattening it, "
            "or name the time dimension of a single env's [T] window (td.refine_names('time'))."
        )
    return tensordict.batch_dims - 1


@contextlib.contextmanager
def held_out(module: nn.Module, params: TensorDictBase | None = None) -> Iterator[nn.Module]:
    """Evaluate ``module`` with detached parameters (``params``, e.g. a target critic, or its own).

    Gradients flow through the module to its inputs but never into its parameters: the critic, reward and
    world models are trained by their own losses, not by the actor's.
    """
    params = TensorDict.from_module(module) if params is None else params
    with params.detach().to_module(module):
        yield module
