"""The cool-down schedule of the learned models."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

from tensordict import TensorDictBase
from torchrl.data import ReplayBuffer
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement

from torchrl_shacpp.checks import check_count, check_counts, check_positive


@dataclass(frozen=True)
class CoolDown:
    """When the value, reward and world models train, and on which minibatches.

    Data are cached after every window, but the models train only after every ``every``-th window, for
    ``epochs`` passes over their cache (paper: 10 and 10, minibatches of 1000). Windows are counted from 0, so
    with ``every=10`` they train after windows 9, 19, 29, ..., each time on 10 more windows of data (the authors'
    ``episode % ett == 0`` with episodes counted from 1).

    The cost of ``epochs`` passes grows with the cache (the paper's 30,000 items: 300 minibatches per model per
    training once full). With ``steps``, each training is that many minibatches instead, drawn in the same shuffled
    passes (the last pass cut short), whatever the cache holds: a budget that does not grow with the cache.
    ``first_steps`` gives the first trainings budgets of their own, one per training, and ``surprise_steps`` the budget
    of a training after the policy has led the agents where the model is wrong (:meth:`for_training`).

    Args:
        every (int, optional): train after every ``every``-th window. Defaults to 10.
        epochs (int, optional): passes over the cache per training. Defaults to 10.
        steps (int, optional): minibatches per training instead of ``epochs`` passes. Defaults to ``None``.
        first_steps (tuple of int, optional): minibatches of the first ``len(first_steps)`` trainings, one entry
            each, instead of ``epochs`` passes or ``steps``. Defaults to ``()``.
        surprise_steps (int, optional): minibatches of a later training whose model's surprise reaches
            ``surprise_ratio``. Defaults to ``None`` (no such budget).
        surprise_ratio (float, optional): the surprise that calls for ``surprise_steps``: the model's mean loss on
            the windows collected since its last training, before it trained on them, over that training's mean
            loss (:attr:`LearnedModel.surprise <torchrl_shacpp.trainers.LearnedModel.surprise>`). Defaults to 3.

    Examples:
        >>> cooldown = CoolDown(every=10, epochs=10)
        >>> cache.extend(transitions)
        >>> if cooldown.should_train(window):
        ...     for minibatch in cooldown.minibatches(cache):
        ...         step(loss(minibatch))
    """

    every: int = 10
    epochs: int = 10
    steps: int | None = None
    first_steps: tuple[int, ...] = ()
    surprise_steps: int | None = None
    surprise_ratio: float = 3.0

    def __post_init__(self) -> None:
        check_count("every", self.every, hint="The models train after every this many windows (paper: 10).")
        check_count("epochs", self.epochs, hint="It is the number of passes over each cache (paper: 10).")
        if self.steps is not None:
            check_count("steps", self.steps, hint="It is the minibatches per training; None trains for epochs.")
        check_counts("first_steps", self.first_steps, hint="It lists the minibatches of the first trainings.")
        if self.surprise_steps is not None:
            check_count("surprise_steps", self.surprise_steps, hint="It is the minibatches of a surprised training.")
        check_positive("surprise_ratio", self.surprise_ratio, "It is the new data's loss over the last training's.")

    def should_train(self, window: int) -> bool:
        """Whether the models train after window ``window`` (counted from 0)."""
        if window < 0:
            raise ValueError(f"Windows are counted from 0, got {window}.")
        return (window + 1) % self.every == 0

    def for_training(self, training: int, surprise: float = math.nan) -> CoolDown:
        """The budget of training ``training`` (counted from 0) of a model whose surprise is ``surprise``:
        ``first_steps[training]`` minibatches while there is such an entry; after, ``surprise_steps`` if set and
        ``surprise >= surprise_ratio``; else this cool-down's budget."""
        if training < len(self.first_steps):
            return dataclasses.replace(self, steps=self.first_steps[training], first_steps=())
        if self.surprise_steps is not None and surprise >= self.surprise_ratio:
            return dataclasses.replace(self, steps=self.surprise_steps, first_steps=())
        return self

    def minibatches(self, buffer: ReplayBuffer) -> Iterator[TensorDictBase]:
        """Yields the minibatches of ``epochs`` shuffled passes over ``buffer``, of its ``batch_size`` (or the first
        ``steps`` minibatches of as many passes as they take).

        Each pass visits every stored item exactly once and keeps its last, short minibatch. A pass is one run
        of the buffer's iterator, so the buffer needs a sampler without replacement, such as the
        :class:`~torchrl_shacpp.data.WrittenSlotSampler` of :func:`~torchrl_shacpp.data.make_stratified_cache`,
        which starts its first pass afresh after the window's data are written. An empty buffer yields nothing.
        """
        if not isinstance(buffer.sampler, SamplerWithoutReplacement):
            raise TypeError(
                f"CoolDown needs a buffer that samples in passes without replacement, got a "
                f"{type(buffer.sampler).__name__} (its iterator never ends)."
            )
        if not len(buffer):
            return
        if self.steps is None:
            for _ in range(self.epochs):
                yield from buffer
            return
        remaining = self.steps
        while remaining:
            for minibatch in itertools.islice(buffer, remaining):
                remaining -= 1
                yield minibatch
