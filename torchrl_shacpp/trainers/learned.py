"""What each learned model of SHAC+/SHAC++ caches from a window, and how it trains from its cache."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torch.profiler import record_function
from torchrl.data import ReplayBuffer
from torchrl.objectives import LossModule

from torchrl_shacpp.checks import check_count, check_counts, check_positive
from torchrl_shacpp.data import finite_items
from torchrl_shacpp.optim import FiniteGradientStep, load_state_keeping_rates
from torchrl_shacpp.trainers.cooldown import CoolDown


def world_items(
    window: TensorDictBase, *, observation_key: NestedKey, action_key: NestedKey, reward_key: NestedKey
) -> TensorDictBase:
    """Whole ``[B, h]`` windows with what :class:`~torchrl_shacpp.objectives.WorldModelLoss` reads; the score under
    ``"score"`` is the reward summed over agents per step, which the cache sums over the window (its return)."""
    items = window.select(observation_key, action_key, ("next", observation_key), ("next", "done"))
    items["score"] = window.get(("next", reward_key)).sum((-2, -1))
    return items


def reward_items(
    window: TensorDictBase, *, observation_key: NestedKey, action_key: NestedKey, reward_key: NestedKey
) -> TensorDictBase:
    """Flattened transitions ``(o, a, o', r)``; score the reward (summed over agents by the cache)."""
    return window.select(observation_key, action_key, ("next", observation_key), ("next", reward_key)).reshape(-1)


def value_items(window: TensorDictBase, *, observation_key: NestedKey, value_target_key: NestedKey) -> TensorDictBase:
    """Flattened observations with the TD(λ) targets already written in the window; score the target."""
    return window.select(observation_key, value_target_key).reshape(-1)


def _nan_mean(values: Iterable[float]) -> float:
    """The mean of the non-NaN ``values``; NaN if there is none."""
    finite = [value for value in values if not math.isnan(value)]
    return sum(finite) / len(finite) if finite else math.nan


class LearnedModel:
    """A model trained from its own cache on the cool-down schedule, with Adam and no gradient clipping.

    Non-finite steps are skipped and counted (:class:`~torchrl_shacpp.optim.FiniteGradientStep`), and items holding a
    non-finite value (from the simulator or from a model) are dropped before they reach the cache, counted in
    :attr:`dropped_items`.

    Args:
        name: the model's name, for logs and checkpoints.
        loss: the model's loss (e.g. :class:`~torchrl_shacpp.objectives.WorldModelLoss`), whose one output (its
            ``out_keys``) is minimised; its parameters are trained.
        cache: where the model's items are kept, e.g. :func:`~torchrl_shacpp.data.make_stratified_cache`.
        items: what to cache from a detached ``[B, h]`` window (:func:`world_items`, :func:`reward_items`,
            :func:`value_items`).

    Keyword Args:
        lr: Adam's learning rate (paper: 1e-3).
        window_length: for a cache of whole windows (the world model's), the length of the windows it holds; a
            window of another length (the short last window of a batch) is not cached. ``None`` caches every window.
        steps: minibatches per training of this model, instead of the cool-down's budget (its ``epochs`` passes,
            ``steps`` or ``first_steps``); ``None`` keeps the cool-down's.
        epochs_only: train on the cool-down's ``epochs`` passes whatever its minibatch budgets (``steps``,
            ``first_steps``, ``surprise_steps``): the paper's one-pass world model, whose items are whole windows, so
            that a budget in minibatches costs ``window_length`` times what it costs a model of transitions, and,
            while the cache holds fewer windows than a minibatch, a pass over all of it at every step.
        first_epochs: with ``epochs_only``, the passes of this model's first ``len(first_epochs)`` trainings, one entry
            each, instead of the cool-down's ``epochs`` (SHAC++'s ``world_model_first_epochs``).
        max_steps: at most this many minibatches per training, whatever the budget: the passes cut short once the
            cache has grown past them (SHAC++'s ``world_model_max_steps``). ``None``: no bound.
        adam_kwargs: further Adam arguments (e.g. ``eps``).
    """

    def __init__(
        self,
        name: str,
        loss: LossModule,
        cache: ReplayBuffer,
        items: Callable[[TensorDictBase], TensorDictBase],
        *,
        lr: float,
        window_length: int | None = None,
        steps: int | None = None,
        epochs_only: bool = False,
        first_epochs: Sequence[int] = (),
        max_steps: int | None = None,
        **adam_kwargs: Any,
    ) -> None:
        if len(loss.out_keys) != 1:
            raise ValueError(f"The {name} model's loss must have one output to minimise; it has {loss.out_keys}.")
        check_positive("lr", lr, f"It is the {name} model's Adam learning rate (paper: 1e-3).")
        self.name, self.loss, self.cache, self.items = name, loss, cache, items
        self.window_length = window_length
        if steps is not None:
            check_count("steps", steps, hint=f"It is the {name} model's minibatches per training, or None.")
        if steps is not None and epochs_only:
            raise ValueError(
                f"The {name} model was given steps={steps} and epochs_only=True: a budget of its own in minibatches, "
                "or the cool-down's passes; pass one of them."
            )
        check_counts("first_epochs", first_epochs, hint=f"It lists the passes of the {name} model's first trainings.")
        if first_epochs and not epochs_only:
            raise ValueError(
                f"The {name} model was given first_epochs={list(first_epochs)} without epochs_only=True: its budgets "
                "are the cool-down's (first_steps for its first trainings); pass epochs_only=True, or no first_epochs."
            )
        if max_steps is not None:
            check_count("max_steps", max_steps, hint=f"It bounds the {name} model's minibatches per training, or None.")
        self.steps, self.epochs_only, self.first_epochs = steps, epochs_only, tuple(first_epochs)
        self.max_steps = max_steps
        self.step = FiniteGradientStep(torch.optim.Adam(loss.parameters(), lr=lr, **adam_kwargs))
        self.dropped_items = 0
        self.trainings = 0
        self.last_loss = math.nan  # the mean minibatch loss of the last training
        self.new_data_losses: list[float] = []  # measured since the last training

    def _finite_items(self, window: TensorDictBase) -> tuple[TensorDictBase, int] | None:
        """The finite items this model takes from a detached ``[B, h]`` window and the number it leaves out for a
        non-finite value; ``None`` for a window of another length than its cache holds."""
        if self.window_length is not None and window.shape[-1] != self.window_length:
            return None
        items = self.items(window)
        finite = finite_items(items)
        if finite.all():
            return items, 0
        return items[finite], int((~finite).sum())

    def store(self, window: TensorDictBase) -> None:
        """Caches the finite items of a detached ``[B, h]`` window (a world-cache item is a whole window of one env)."""
        taken = self._finite_items(window)
        if taken is None:
            return
        items, dropped = taken
        self.dropped_items += dropped
        self.cache.extend(items)

    def error(self, window: TensorDictBase) -> float:
        """The loss on the finite items of a detached ``[B, h]`` window, in eval mode and without training: called
        before :meth:`store`, the model's error on the states that the policy reaches now. NaN when the window has no
        item this model caches (none finite, or a world cache's window of another length)."""
        taken = self._finite_items(window)
        if taken is None or not taken[0].numel():
            return math.nan
        items = taken[0]
        training = self.loss.training
        self.loss.eval()
        try:
            with torch.no_grad():
                return self.loss(items)[self.loss.out_keys[0]].item()
        finally:
            self.loss.train(training)

    def measure(self, windows: list[TensorDictBase]) -> float:
        """The mean :meth:`error` over ``windows`` (NaN if none has an item), kept towards :attr:`surprise`."""
        loss = _nan_mean(map(self.error, windows))
        if not math.isnan(loss):
            self.new_data_losses.append(loss)
        return loss

    @property
    def surprise(self) -> float:
        """The mean of the losses :meth:`measure` returned since the last training, over that training's mean loss
        (NaN before the first training and measure): above 1, the model is wronger where the policy has led the
        agents since than on its cache."""
        if not self.new_data_losses or not self.last_loss > 0:
            return math.nan
        return sum(self.new_data_losses) / len(self.new_data_losses) / self.last_loss

    def fit(self, cooldown: CoolDown) -> float:
        """Trains on the cool-down's minibatches of the cache for this training (:meth:`CoolDown.for_training` at
        this model's :attr:`surprise`; :attr:`steps` of them, if set; its ``epochs`` passes with ``epochs_only``, or
        ``first_epochs[trainings]`` while there is such an entry; at most :attr:`max_steps` of them); returns the mean
        minibatch loss (NaN if none). A training of at least one minibatch is counted in :attr:`trainings`, and starts
        a new measure of the surprise."""
        if self.epochs_only:
            first = self.trainings < len(self.first_epochs)
            cooldown = dataclasses.replace(
                cooldown, epochs=self.first_epochs[self.trainings] if first else cooldown.epochs, steps=None,
                first_steps=(), surprise_steps=None,
            )
        elif self.steps is None:
            cooldown = cooldown.for_training(self.trainings, self.surprise)
        else:
            cooldown = dataclasses.replace(cooldown, steps=self.steps)
        losses = []
        for batch in itertools.islice(cooldown.minibatches(self.cache), self.max_steps):
            with record_function(f"shac/{self.name}/loss"):
                loss = self.loss(batch)[self.loss.out_keys[0]]
            with record_function(f"shac/{self.name}/backward_and_step"):
                self.step(loss)
            losses.append(loss.detach())
        if not losses:
            return math.nan
        self.trainings += 1
        # One host synchronisation per training, not one per minibatch.
        self.last_loss = torch.stack(losses).mean().item()
        self.new_data_losses = []
        return self.last_loss

    def state_dict(self) -> dict[str, Any]:
        """The parameters (its loss's), the optimiser, the cache, the skip and drop counts and the trainings."""
        return {
            "loss": self.loss.state_dict(),
            "optimizer": self.step.optimizer.state_dict(),
            "cache": self.cache.state_dict(),
            "skipped_steps": self.step.skipped_steps,
            "dropped_items": self.dropped_items,
            "trainings": self.trainings,
            "last_loss": self.last_loss,
            "new_data_losses": list(self.new_data_losses),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.loss.load_state_dict(state_dict["loss"])
        load_state_keeping_rates(self.step.optimizer, state_dict["optimizer"])
        self.cache.load_state_dict(state_dict["cache"])
        self.step.skipped_steps = state_dict["skipped_steps"]
        self.dropped_items = state_dict.get("dropped_items", 0)  # checkpoints before it was counted
        self.trainings = state_dict.get("trainings", 0)  # checkpoints before it was counted
        self.last_loss = state_dict.get("last_loss", math.nan)  # checkpoints before the surprise was measured
        self.new_data_losses = list(state_dict.get("new_data_losses", []))
