"""VMAS tasks for SHAC: differentiable-reward scenarios, task presets, and the simulator's autograd state."""

from torchrl_shacpp.envs.balance import CentredRotationBalance
from torchrl_shacpp.envs.dispersion import SpreadStartDispersion
from torchrl_shacpp.envs.faults import ResetNonFinite
from torchrl_shacpp.envs.navigation import DifferentiableNavigation
from torchrl_shacpp.envs.sampling import DifferentiableSampling
from torchrl_shacpp.envs.simulator import detach_simulator_state, set_simulator_grad, vmas_environment
from torchrl_shacpp.envs.tasks import (
    VMAS_TASKS,
    VmasTask,
    get_vmas_task,
    make_vmas_env,
    task_has_differentiable_reward,
    vmas_env,
)
from torchrl_shacpp.envs.transport import DifferentiableTransport

__all__ = [
    "VMAS_TASKS",
    "CentredRotationBalance",
    "DifferentiableNavigation",
    "DifferentiableSampling",
    "DifferentiableTransport",
    "ResetNonFinite",
    "SpreadStartDispersion",
    "VmasTask",
    "detach_simulator_state",
    "get_vmas_task",
    "make_vmas_env",
    "set_simulator_grad",
    "task_has_differentiable_reward",
    "vmas_env",
    "vmas_environment",
]
