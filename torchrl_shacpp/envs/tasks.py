"""The paper's four VMAS tasks by name: scenario presets and a TorchRL env factory."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torchrl.envs import StepCounter, TransformedEnv
from torchrl.envs.libs.vmas import VmasEnv
from vmas.simulator.scenario import BaseScenario

from torchrl_shacpp.envs.dispersion import SpreadStartDispersion
from torchrl_shacpp.envs.sampling import DifferentiableSampling
from torchrl_shacpp.envs.transport import DifferentiableTransport


@dataclass(frozen=True)
class VmasTask:
    """A VMAS task preset: the scenario, its differentiable-reward variant (if any) and its default kwargs.

    Attributes:
        name (str): the VMAS scenario name (``vmas/scenarios/<name>.py``).
        default_n_agents (int): BenchMARL's default number of agents.
        preset (Callable[[int], dict]): scenario kwargs for ``n_agents`` agents (BenchMARL's defaults where they
            differ from VMAS's, and the paper's settings).
        differentiable_scenario (type | None): a :class:`~vmas.simulator.scenario.BaseScenario` subclass whose
            reward has VMAS's values and a gradient w.r.t. the actions; ``None`` if the reward is not
            differentiable (sparse event counts).
        scenario (type | None): the scenario when no differentiable reward is asked for; ``None`` for VMAS's own.
    """

    name: str
    default_n_agents: int
    preset: Callable[[int], dict[str, Any]]
    differentiable_scenario: type[BaseScenario] | None = None
    scenario: type[BaseScenario] | None = None

    @property
    def has_differentiable_reward(self) -> bool:
        return self.differentiable_scenario is not None

    def make_scenario(self, differentiable_reward: bool = True) -> BaseScenario:
        """A fresh scenario instance (one per env): the differentiable variant when asked for and available."""
        if differentiable_reward and self.has_differentiable_reward:
            return self.differentiable_scenario()
        if self.scenario is not None:
            return self.scenario()
        return importlib.import_module(f"vmas.scenarios.{self.name}").Scenario()

    def scenario_kwargs(self, n_agents: int | None = None, **overrides: Any) -> dict[str, Any]:
        """The preset's kwargs for ``n_agents`` (default: :attr:`default_n_agents`), updated by ``overrides``."""
        n_agents = self.default_n_agents if n_agents is None else n_agents
        return {"n_agents": n_agents, **self.preset(n_agents), **overrides}


VMAS_TASKS: dict[str, VmasTask] = {
    task.name: task
    for task in (
        # Same kwargs as VMAS and BenchMARL.
        VmasTask("transport", 4, lambda n: {}, DifferentiableTransport),
        # BenchMARL gives every agent its own reward (VMAS default: shared sum).
        VmasTask("sampling", 3, lambda n: {"shared_rew": False}, DifferentiableSampling),
        # The authors': one food per agent (BenchMARL pins 4), VMAS's per-agent rewards and food radius 0.05
        # (BenchMARL: shared reward, 0.02), agents starting apart (VMAS: all at the origin).
        VmasTask(
            "dispersion",
            4,
            lambda n: {"n_food": n, "share_reward": False, "food_radius": 0.05, "agent_start_radius": 0.05},
            scenario=SpreadStartDispersion,
        ),
        # Paper: 7 targets, 2 agents to cover one (1 for a single agent, who could never cover any otherwise);
        # BenchMARL: shared reward (VMAS: per agent).
        VmasTask(
            "discovery",
            5,
            lambda n: {"n_targets": 7, "agents_per_target": 2 if n > 1 else 1, "shared_reward": True},
        ),
    )
}


def get_vmas_task(task: str) -> VmasTask:
    """The preset for ``task`` (case-insensitive); a :class:`ValueError` naming the known tasks otherwise."""
    try:
        return VMAS_TASKS[task.lower()]
    except KeyError:
        raise ValueError(f"Unknown VMAS task {task!r}; known tasks: {', '.join(sorted(VMAS_TASKS))}.") from None


def task_has_differentiable_reward(task: str) -> bool:
    """Whether ``task``'s reward has a gradient w.r.t. the actions (needed by SHAC, not by SHAC+ / SHAC++)."""
    return get_vmas_task(task).has_differentiable_reward


def make_vmas_env(
    task: str,
    *,
    num_envs: int,
    n_agents: int | None = None,
    max_steps: int | None = 100,
    differentiable_reward: bool = True,
    grad_enabled: bool = False,
    seed: int | None = None,
    device: str = "cpu",
    **scenario_kwargs: Any,
) -> TransformedEnv:
    """A batched TorchRL env for one of the paper's VMAS tasks, with termination and truncation told apart.

    The VMAS env is built without a horizon and a :class:`~torchrl.envs.StepCounter` adds it: TorchRL's VMAS
    wrapper would otherwise report the time limit as ``terminated``. So ``("next", "terminated")`` is the
    scenario's own end (transport: package on goal; dispersion: all food eaten; sampling and discovery never),
    ``("next", "truncated")`` the time limit, and ``done = terminated | truncated``.

    Args:
        task (str): ``"transport"``, ``"sampling"``, ``"dispersion"`` or ``"discovery"`` (see :data:`VMAS_TASKS`).

    Keyword Args:
        num_envs (int): B, the number of vectorised envs.
        n_agents (int, optional): defaults to BenchMARL's default for the task (transport 4, sampling 3,
            dispersion 4, discovery 5).
        max_steps (int, optional): the time limit (BenchMARL: 100); ``None`` counts steps without truncating.
        differentiable_reward (bool): use the task's differentiable-reward scenario where it has one
            (transport, sampling; same reward values as VMAS). Defaults to ``True``.
        grad_enabled (bool): let VMAS keep the actions' autograd graph (SHAC). Defaults to ``False``.
        seed (int, optional): VMAS seed.
        device (str): simulation device. Defaults to ``"cpu"``.
        **scenario_kwargs: override the preset's scenario kwargs (:meth:`VmasTask.scenario_kwargs`), e.g.
            ``approach_coef`` for transport or ``lookahead_coef`` for sampling.

    Actions outside ``[-1, 1]`` are clamped by VMAS, as in BenchMARL.

    Examples:
        >>> env = make_vmas_env("transport", num_envs=32, n_agents=3, grad_enabled=True)
        >>> td = env.rollout(10)
    """
    preset = get_vmas_task(task)
    env = VmasEnv(
        scenario=preset.make_scenario(differentiable_reward),
        num_envs=num_envs,
        max_steps=None,
        continuous_actions=True,
        clamp_actions=True,
        grad_enabled=grad_enabled,
        seed=seed,
        device=device,
        **preset.scenario_kwargs(n_agents, **scenario_kwargs),
    )
    return TransformedEnv(env, StepCounter(max_steps))
