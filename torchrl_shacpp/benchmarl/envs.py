"""What the SHAC family changes in a BenchMARL experiment's VMAS environments."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

from benchmarl.environments import TaskClass, VmasClass
from torchrl.envs import Compose, StepCounter, TransformedEnv

from torchrl_shacpp.envs import ResetNonFinite, vmas_env


def rebuild_vmas_env(env: TransformedEnv, task: VmasClass, *, simulator_graph: bool, seed: int) -> TransformedEnv:
    """``env`` (a BenchMARL VMAS env) rebuilt for the SHAC family, with BenchMARL's transforms kept.

    Changes that alter no reward value and no observation:

    * with ``simulator_graph`` (SHAC, SHAC+), VMAS keeps the actions' autograd graph, and the tasks with a
      differentiable-reward variant (transport, sampling, navigation; :data:`~torchrl_shacpp.envs.VMAS_TASKS`) get
      it: VMAS's own rewards have no usable gradient (navigation's collision penalty has none), and its scenarios
      write in place into tensors that a graph-carrying window saved for backward (sampling's ``max_pdf`` at a
      reset);
    * a task that names the differentiable-reward scenario itself (``task=vmas/<task>_differentiable``, e.g. with
      ``+task.approach_reward=true``) keeps it, whether or not the algorithm back-propagates through it;
    * the time limit moves from VMAS to a :class:`~torchrl.envs.StepCounter`: TorchRL's VMAS wrapper reports it as
      ``terminated``, which would bootstrap the value targets and the actor objective with 0 instead of
      :math:`V(o')` at every time limit;
    * an env whose step returns a non-finite value is reset after it (:class:`~torchrl_shacpp.envs.ResetNonFinite`),
      and non-finite actions are refused with a message before VMAS's bare assertion.
    """
    config = copy.deepcopy(task.config)
    max_steps = config.pop("max_steps")
    simulator = vmas_env(
        task.name, num_envs=env.base_env.batch_size[0],
        differentiable_reward=simulator_graph or getattr(task, "differentiable_reward", False),
        grad_enabled=simulator_graph, seed=seed, device=env.base_env.device, **config,
    )  # fmt: skip
    transforms = [transform.clone() for transform in env.transform] if isinstance(env.transform, Compose) else []
    env.close()
    return TransformedEnv(simulator, Compose(StepCounter(max_steps), ResetNonFinite(), *transforms))


def is_vmas(task: TaskClass) -> bool:
    return isinstance(task, VmasClass)


#: The VMAS scenario arguments that, when false, leave each agent its own reward (each scenario names it its way).
VMAS_SHARED_REWARD_KEYS = ("shared_rew", "shared_reward", "share_reward")


def rewards_are_each_agents_own(task: TaskClass) -> bool:
    """Whether the task declares each agent's reward its own: a VMAS task whose shared-reward argument is false
    (navigation's and sampling's ``shared_rew``, the paper's dispersion's ``share_reward``). A task that declares
    nothing (transport, balance, wheel, give_way) is not taken to have individual rewards."""
    return is_vmas(task) and any(task.config.get(key) is False for key in VMAS_SHARED_REWARD_KEYS)


#: The VMAS scenarios whose per-agent observation holds an angle modulo a period, as ``(index, period)`` pairs: balance's
#: and wheel's line rotation, observed as ``rot % pi`` in [0, pi) (a level line sits on balance's cut).
VMAS_PERIODIC_FEATURES: dict[str, tuple[tuple[int, float], ...]] = {
    "balance": ((15, math.pi),),
    "wheel": ((10, math.pi),),
}


def periodic_observation_features(task: TaskClass) -> list[list[float]]:
    """The task's observation features that are angles, ``[[index, period], ...]`` (:data:`VMAS_PERIODIC_FEATURES`;
    none for any other task)."""
    if not is_vmas(task):
        return []
    return [list(pair) for pair in VMAS_PERIODIC_FEATURES.get(task.name.lower(), ())]


def world_periodic_features(task: TaskClass, world_rollout: str, configured: Sequence | None) -> list[list[float]]:
    """The angle features SHAC++'s spliced transition model reads: ``configured`` (``world_periodic_features``), or
    with ``None`` the task's; none for the one-pass model, which has no such input."""
    if world_rollout != "spliced":
        return []
    if configured is not None:
        return [list(pair) for pair in configured]
    return periodic_observation_features(task)
