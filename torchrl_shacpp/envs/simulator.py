"""Access to the VMAS simulator under a TorchRL env: its gradient switch and its graph-carrying state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchrl.envs import EnvBase


def vmas_environment(env: EnvBase):
    """The ``vmas.simulator.environment.Environment`` under a (possibly transformed) TorchRL env, or ``None``."""
    while hasattr(env, "base_env"):  # TransformedEnv, possibly nested
        env = env.base_env
    simulator = getattr(env, "_env", None)
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

    VMAS keeps graph-carrying tensors on the entities (``world.zero_grad`` detaches their states and actions),
    but also on the scenario (transport's ``global_shaping``, the approach-shaping state of
    :class:`~torchrl_shacpp.envs.DifferentiableTransport`), on sensors (the lidar's last measurement) and on
    entities outside their state (sampling's ``agent.sample``). A later window's ``backward`` fails on a freed
    graph, or silently reaches earlier actions, unless all of them are detached. So, rather than listing
    attributes per scenario, this walks every object reachable from the scenario whose class comes from
    ``vmas`` or from the scenario's own package (and the lists, tuples and dicts they hold) and replaces each
    tensor that has a ``grad_fn`` by its detached value. A no-op for envs that are not VMAS.
    """
    simulator = vmas_environment(env)
    if simulator is None:
        return
    simulator.world.zero_grad()  # VMAS's own API; the walk below catches what it leaves
    packages = {"vmas", type(simulator.scenario).__module__.partition(".")[0]}
    _detach_graphs(simulator.scenario, lambda obj: type(obj).__module__.partition(".")[0] in packages, set())


def _detach_graphs(value: Any, walk_into: Callable[[Any], bool], seen: set[int]) -> Any:
    """``value`` with every tensor that has a ``grad_fn`` detached; lists, dicts and objects are updated in place."""
    if isinstance(value, torch.Tensor):
        return value.detach() if value.grad_fn is not None else value
    if type(value) is tuple:  # immutable: rebuilt (cycles run through the mutable containers tracked in ``seen``)
        items = tuple(_detach_graphs(item, walk_into, seen) for item in value)
        return value if all(new is old for new, old in zip(items, value)) else items
    if id(value) in seen:
        return value
    seen.add(id(value))
    if isinstance(value, (list, dict)):
        slots = value
    elif hasattr(value, "__dict__") and walk_into(value):
        slots = vars(value)
    else:
        return value
    for key, item in list(slots.items() if isinstance(slots, dict) else enumerate(slots)):
        detached = _detach_graphs(item, walk_into, seen)
        if detached is not item:
            slots[key] = detached
    return value
