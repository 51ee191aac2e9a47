"""Access to the VMAS simulator under a TorchRL env: its gradient switch and its graph-carrying state."""

from __future__ import annotations

import torch
from torchrl.envs import EnvBase


def vmas_environment(env: EnvBase):
    """The ``vmas.simulator.environment.Environment`` under a (possibly transformed) TorchRL env, or ``None``."""
    simulator = getattr(env.base_env, "_env", None)
    return simulator if hasattr(simulator, "grad_enabled") and hasattr(simulator, "world") else None


def set_simulator_grad(env: EnvBase, enabled: bool) -> None:
    """Switches VMAS's differentiable stepping on or off (VMAS detaches actions unless ``grad_enabled``).

    A no-op for envs that are not VMAS: a pure-torch env is differentiable whenever autograd is on.
    """
    simulator = vmas_environment(env)
    if simulator is not None:
        simulator.grad_enabled = enabled


def detach_simulator_state(env: EnvBase) -> None:
    """Cuts the autograd graph of the simulator's internal state in place, keeping its values.

    VMAS keeps graph-carrying tensors on entities (``world.zero_grad`` detaches those) and on the scenario
    (transport's ``global_shaping``); a second window's ``backward`` fails on a freed graph unless both are
    detached. A no-op for envs that are not VMAS.
    """
    simulator = vmas_environment(env)
    if simulator is None:
        return
    simulator.world.zero_grad()
    for owner in (simulator.scenario, *simulator.world.entities):
        for name, value in vars(owner).items():
            if isinstance(value, torch.Tensor) and value.requires_grad:
                setattr(owner, name, value.detach())
