"""The differentiable-reward VMAS tasks as BenchMARL tasks (``task=vmas/transport_differentiable``, ...)."""

from __future__ import annotations

import copy
from typing import Callable, Optional

from benchmarl.environments import Task, VmasClass
from benchmarl.utils import DEVICE_TYPING
from torchrl.envs import EnvBase
from torchrl.envs.libs.vmas import VmasEnv

from torchrl_shacpp.envs import VMAS_TASKS


class DifferentiableVmasClass(VmasClass):
    """A VMAS task whose scenario is :mod:`torchrl_shacpp.envs`' differentiable-reward variant.

    Same rewards, observations and settings as BenchMARL's ``vmas/<task>`` (results are filed under that name), but
    the reward has a gradient with respect to the actions: for any algorithm that back-propagates through the
    simulator (e.g. one using BenchMARL's ``collect_with_grad``). ``algorithm=shac|shacp`` make this swap on
    ``vmas/<task>`` themselves. Extra scenario kwargs (transport's ``approach_coef``, sampling's ``lookahead_coef``)
    can be added to the task config with ``+task.<kwarg>=...``.
    """

    def get_env_fun(
        self, num_envs: int, continuous_actions: bool, seed: Optional[int], device: DEVICE_TYPING
    ) -> Callable[[], EnvBase]:
        config = copy.deepcopy(self.config)
        preset = VMAS_TASKS[self.name.lower()]
        return lambda: VmasEnv(
            scenario=preset.make_scenario(differentiable_reward=True),
            num_envs=num_envs,
            continuous_actions=continuous_actions,
            seed=seed,
            device=device,
            categorical_actions=True,
            clamp_actions=True,
            **config,
        )


class DifferentiableVmasTask(Task):
    """Enum of the differentiable-reward VMAS tasks (registered as ``vmas/<name>_differentiable``)."""

    TRANSPORT = None
    SAMPLING = None

    @staticmethod
    def associated_class():
        return DifferentiableVmasClass
