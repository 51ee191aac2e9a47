"""Faults injected into VMAS and into collected batches, for the tests (and the benchmark) of non-finite data."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from benchmarl.experiment.callback import Callback
from tensordict import TensorDictBase
from vmas.simulator.scenario import BaseScenario


@contextlib.contextmanager
def diverging_agent(
    scenario: type[BaseScenario], *, at_call: int, num_envs: int, env: int = 1
) -> Iterator[dict[str, int]]:
    """A diverged simulation: the ``at_call``-th call of ``scenario.observation`` in the scenarios of ``num_envs`` envs
    (all agents' calls counted, resets included) first moves the agent of env ``env`` to NaN, so every later
    observation of that env is NaN until the env is reset. Yields the call counter."""
    original = scenario.observation
    counter = {"calls": 0}

    def observation(self, agent):
        if self.world.batch_dim != num_envs:
            return original(self, agent)
        counter["calls"] += 1
        if counter["calls"] == at_call:
            faulty = torch.arange(agent.state.pos.shape[0], device=agent.state.pos.device) == env
            agent.state.pos = torch.where(faulty[:, None], math.nan, agent.state.pos)
        return original(self, agent)

    scenario.observation = observation
    try:
        yield counter
    finally:
        scenario.observation = original


class CorruptBatch(Callback):
    """Writes NaN, then (at the next collection) an infinity, into one observation of the collected batches listed in
    ``collections`` (counted from 0), before the algorithm sees them (callbacks run in order, the algorithm's last)."""

    def __init__(self, collections: tuple[int, ...], group: str = "agents") -> None:
        super().__init__()
        self.collections, self.group, self.seen = collections, group, 0

    def on_batch_collected(self, batch: TensorDictBase) -> None:
        if self.seen in self.collections:
            value = (math.nan, math.inf)[self.collections.index(self.seen) % 2]
            observation = batch.get((self.group, "observation")).detach().clone()
            observation[1, 3, 0, 0] = value  # env 1, step 3, agent 0
            batch.set((self.group, "observation"), observation)
        self.seen += 1
