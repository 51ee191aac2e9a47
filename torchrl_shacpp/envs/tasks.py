"""The VMAS tasks by name: scenario presets (the paper's four, navigation, balance_centred), and the one factory of VMAS
envs."""

from __future__ import annotations

import functools
import importlib
import importlib.resources
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import vmas
from omegaconf import OmegaConf
from torchrl.envs import Compose, StepCounter, TransformedEnv
from torchrl.envs.libs.vmas import VmasEnv
from vmas.simulator.scenario import BaseScenario

from torchrl_shacpp.checks import check_count
from torchrl_shacpp.envs.balance import CentredRotationBalance
from torchrl_shacpp.envs.dispersion import SpreadStartDispersion
from torchrl_shacpp.envs.faults import ResetNonFinite
from torchrl_shacpp.envs.navigation import DifferentiableNavigation
from torchrl_shacpp.envs.sampling import DifferentiableSampling
from torchrl_shacpp.envs.transport import DifferentiableTransport


@dataclass(frozen=True)
class VmasTask:
    """A VMAS task preset: the scenario, its differentiable-reward variant (if any) and its default kwargs.

    Attributes:
        name (str): the VMAS scenario name (``vmas/scenarios/<name>.py``), or this package's name for a variant of
            one (``balance_centred``), whose ``scenario`` is then given.
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


def agents_per_target(n_agents: int) -> int:
    """The paper's discovery: two agents cover a target, one when there is a single agent (who could not otherwise)."""
    return 2 if int(n_agents) > 1 else 1


OmegaConf.register_new_resolver("shacpp_agents_per_target", agents_per_target, replace=True)


@functools.cache
def _paper_task_config(task: str) -> Any:
    """``task/vmas/<task>_paper.yaml`` of :mod:`torchrl_shacpp.benchmarl_configs`, the one source of the paper's
    settings of the tasks whose settings differ from BenchMARL's."""
    path = importlib.resources.files("torchrl_shacpp.benchmarl_configs") / "task" / "vmas" / f"{task}_paper.yaml"
    config = OmegaConf.load(str(path))
    config.pop("defaults", None)
    config.pop("max_steps", None)  # the time limit is the env factory's argument
    return config


def paper_preset(task: str) -> Callable[[int], dict[str, Any]]:
    """The paper's scenario kwargs of ``task`` for ``n`` agents, from its BenchMARL task config."""

    def preset(n_agents: int) -> dict[str, Any]:
        config = _paper_task_config(task).copy()
        config.n_agents = n_agents
        kwargs = OmegaConf.to_container(config, resolve=True)
        kwargs.pop("n_agents")
        return kwargs

    return preset


VMAS_TASKS: dict[str, VmasTask] = {
    task.name: task
    for task in (
        # Same kwargs as VMAS and BenchMARL.
        VmasTask("transport", 4, lambda n: {}, DifferentiableTransport),
        # BenchMARL gives every agent its own reward (VMAS default: shared sum).
        VmasTask("sampling", 3, lambda n: {"shared_rew": False}, DifferentiableSampling),
        # The paper's settings: task/vmas/dispersion_paper.yaml and discovery_paper.yaml.
        VmasTask("dispersion", 4, paper_preset("dispersion"), scenario=SpreadStartDispersion),
        VmasTask("discovery", 5, paper_preset("discovery")),
        # BenchMARL gives every agent its own reward (VMAS default: shared sum); the differentiable variant gives
        # VMAS's collision penalty a gradient.
        VmasTask("navigation", 3, lambda n: {"shared_rew": False}, DifferentiableNavigation),
        # VMAS's balance (BenchMARL's 4 agents; its reward is differentiable as it is) with the line's rotation
        # observed without the cut at level.
        VmasTask("balance_centred", 4, lambda n: {}, CentredRotationBalance, scenario=CentredRotationBalance),
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
    ``("next", "truncated")`` the time limit, and ``done = terminated | truncated``. An env whose step returns a
    non-finite observation or reward is truncated there and reset (:class:`~torchrl_shacpp.envs.ResetNonFinite`).

    Args:
        task (str): ``"transport"``, ``"sampling"``, ``"dispersion"``, ``"discovery"`` or ``"navigation"`` (see
            :data:`VMAS_TASKS`), or any other of VMAS's scenarios (``vmas.scenarios``, e.g. ``"wheel"``) with VMAS's
            defaults.

    Keyword Args:
        num_envs (int): B, the number of vectorised envs.
        n_agents (int, optional): defaults to BenchMARL's default for the task (transport 4, sampling 3,
            dispersion 4, discovery 5).
        max_steps (int, optional): the time limit (BenchMARL: 100); ``None`` counts steps without truncating.
        differentiable_reward (bool): use the task's differentiable-reward scenario where it has one
            (transport, sampling, navigation; same reward values as VMAS). Defaults to ``True``.
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
    check_count("num_envs", num_envs, hint="It is the number of vectorised envs B (paper: 512).")
    if n_agents is not None:
        check_count("n_agents", n_agents, hint="Every task needs at least one agent.")
    if task.lower() in VMAS_TASKS:
        kwargs = get_vmas_task(task).scenario_kwargs(n_agents, **scenario_kwargs)
    elif task.lower() in vmas.scenarios:  # VMAS's own scenario, with its own defaults
        kwargs = {**({} if n_agents is None else {"n_agents": n_agents}), **scenario_kwargs}
    else:
        raise ValueError(
            f"Unknown VMAS task {task!r}; known tasks: {', '.join(sorted(VMAS_TASKS))} (this package's presets) or any "
            f"of VMAS's scenarios: {', '.join(sorted(set(vmas.scenarios) - set(VMAS_TASKS)))}."
        )
    env = vmas_env(
        task, num_envs=num_envs, differentiable_reward=differentiable_reward, grad_enabled=grad_enabled, seed=seed,
        device=device, **kwargs,
    )  # fmt: skip
    return TransformedEnv(env, Compose(StepCounter(max_steps), ResetNonFinite()))


def vmas_env(
    task: str,
    *,
    num_envs: int,
    differentiable_reward: bool = False,
    grad_enabled: bool = False,
    max_steps: int | None = None,
    continuous_actions: bool = True,
    seed: int | None = None,
    device: Any = "cpu",
    **scenario_kwargs: Any,
) -> VmasEnv:
    """The TorchRL env of a VMAS task, on this package's scenario for the tasks of :data:`VMAS_TASKS` (the paper's
    dispersion start; the differentiable rewards when asked for) and on VMAS's own for any other; actions clamped to
    the box and categorical when discrete, as BenchMARL builds them. ``max_steps`` is VMAS's time limit, which
    TorchRL's wrapper reports as a termination: :func:`make_vmas_env` counts it with a ``StepCounter`` instead.
    ``scenario_kwargs`` go to the scenario as they are (no preset)."""
    preset = VMAS_TASKS.get(task.lower())
    return VmasEnv(
        scenario=preset.make_scenario(differentiable_reward) if preset else task.lower(),
        num_envs=num_envs,
        continuous_actions=continuous_actions,
        categorical_actions=True,
        clamp_actions=True,
        grad_enabled=grad_enabled,
        max_steps=max_steps,
        seed=seed,
        device=device,
        **scenario_kwargs,
    )
