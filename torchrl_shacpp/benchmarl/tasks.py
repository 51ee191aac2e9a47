"""This package's VMAS scenarios as BenchMARL tasks: the paper's settings (``task=vmas/dispersion_paper``, ...), the
differentiable-reward variants (``task=vmas/transport_differentiable``, ...) and balance with its line's rotation
observed without a cut at level (``task=vmas/balance_centred``), for every algorithm."""

from __future__ import annotations

import copy
from dataclasses import MISSING, dataclass
from typing import Callable, Optional

from benchmarl.environments import Task, TaskClass, VmasClass
from benchmarl.environments.vmas.dispersion import TaskConfig as DispersionConfig
from benchmarl.utils import DEVICE_TYPING
from torchrl.envs import EnvBase

from torchrl_shacpp.benchmarl.configs import CONFIG_DIR, read_config
from torchrl_shacpp.envs import vmas_env


@dataclass
class DispersionPaperConfig(DispersionConfig):
    """The settings of ``task=vmas/dispersion_paper``: BenchMARL's dispersion and the agents' start radius (values in
    the task's yaml only)."""

    agent_start_radius: float = MISSING


class PaperVmasClass(VmasClass):
    """A VMAS task built on :mod:`torchrl_shacpp.envs`' scenario for it (:func:`~torchrl_shacpp.envs.vmas_env`).

    The paper's dispersion starts the agents apart (:class:`~torchrl_shacpp.envs.SpreadStartDispersion`), a scenario
    VMAS does not have, so the task must build it for every algorithm, MAPPO included, for the comparison to be on
    one task. Results are filed under the task's name (``dispersion``, ``discovery``, ``balance_centred``).
    """

    #: Whether to build the differentiable-reward variant of the scenario.
    differentiable_reward = False

    def get_env_fun(
        self, num_envs: int, continuous_actions: bool, seed: Optional[int], device: DEVICE_TYPING
    ) -> Callable[[], EnvBase]:
        config = copy.deepcopy(self.config)
        return lambda: vmas_env(
            self.name, num_envs=num_envs, differentiable_reward=self.differentiable_reward,
            continuous_actions=continuous_actions, seed=seed, device=device, **config,
        )  # fmt: skip


class DifferentiableVmasClass(PaperVmasClass):
    """A VMAS task whose scenario is :mod:`torchrl_shacpp.envs`' differentiable-reward variant.

    Same rewards, observations and settings as BenchMARL's ``vmas/<task>`` (results are filed under that name), but
    the reward has a gradient with respect to the actions: for any algorithm that back-propagates through the
    simulator (e.g. one using BenchMARL's ``collect_with_grad``). ``algorithm=shac|shacp`` make this swap on
    ``vmas/<task>`` themselves. The differentiable scenario's own settings (transport's ``approach_coef``,
    sampling's ``lookahead_coef``) go on ``task=vmas/<task>_differentiable +task.<setting>=...``: BenchMARL checks
    ``vmas/<task>``'s config against VMAS's settings and refuses them there.
    """

    differentiable_reward = True


def package_task(task: Task, config_name: str, path: Optional[str] = None) -> TaskClass:
    """``task`` with this package's ``task/vmas/<config_name>.yaml`` (or ``path``), interpolations resolved."""
    return task.get_task(read_config(path or CONFIG_DIR / "task" / "vmas" / f"{config_name}.yaml"))


class PaperVmasTask(Task):
    """Enum of the paper's VMAS tasks whose scenario VMAS lacks (registered as ``vmas/<name>_paper``)."""

    DISPERSION = None

    @staticmethod
    def associated_class():
        return PaperVmasClass

    def get_from_yaml(self, path: Optional[str] = None) -> TaskClass:
        """The task with this package's ``task/vmas/<name>_paper.yaml`` (or ``path``)."""
        return package_task(self, f"{self.name.lower()}_paper", path)


class CentredVmasTask(Task):
    """Enum of VMAS tasks on this package's scenario that observes an angle without a cut at its usual value
    (registered as ``vmas/<name>``; :class:`~torchrl_shacpp.envs.CentredRotationBalance`)."""

    BALANCE_CENTRED = None

    @staticmethod
    def associated_class():
        return PaperVmasClass

    def get_from_yaml(self, path: Optional[str] = None) -> TaskClass:
        """The task with this package's ``task/vmas/<name>.yaml`` (or ``path``)."""
        return package_task(self, self.name.lower(), path)


class DifferentiableVmasTask(Task):
    """Enum of the differentiable-reward VMAS tasks (registered as ``vmas/<name>_differentiable``)."""

    TRANSPORT = None
    SAMPLING = None
    NAVIGATION = None

    @staticmethod
    def associated_class():
        return DifferentiableVmasClass
