"""What the SHAC family changes in a BenchMARL experiment's environments, and the graph cut of its rollouts."""

from __future__ import annotations

import copy

from benchmarl.environments import TaskClass, VmasClass
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import Compose, EnvBase, StepCounter, TransformedEnv
from torchrl.envs.libs.vmas import VmasEnv

from torchrl_shacpp.envs import VMAS_TASKS, vmas_environment


def rebuild_vmas_env(env: TransformedEnv, task: VmasClass, *, simulator_graph: bool, seed: int) -> TransformedEnv:
    """``env`` (a BenchMARL VMAS env) rebuilt for the SHAC family, with BenchMARL's transforms kept.

    Changes that alter no reward value and no observation:

    * with ``simulator_graph`` (SHAC, SHAC+), VMAS keeps the actions' autograd graph, and the paper's tasks with a
      differentiable-reward variant (transport, sampling; :data:`~torchrl_shacpp.envs.VMAS_TASKS`) get it: VMAS's
      own rewards have no usable gradient, and its scenarios write in place into tensors that a graph-carrying
      window saved for backward (sampling's ``max_pdf`` at a reset);
    * the time limit moves from VMAS to a :class:`~torchrl.envs.StepCounter`: TorchRL's VMAS wrapper reports it as
      ``terminated``, which would bootstrap the value targets and the actor objective with 0 instead of
      :math:`V(o')` at every time limit.
    """
    base = env.base_env
    config = copy.deepcopy(task.config)
    max_steps = config.pop("max_steps")
    name = task.name.lower()
    scenario = VMAS_TASKS[name].make_scenario(simulator_graph) if name in VMAS_TASKS else name
    vmas = VmasEnv(
        scenario=scenario,
        num_envs=base.batch_size[0],
        continuous_actions=True,
        seed=seed,
        device=base.device,
        categorical_actions=True,
        clamp_actions=True,
        grad_enabled=simulator_graph,
        max_steps=None,
        **config,
    )
    transforms = [transform.clone() for transform in env.transform] if isinstance(env.transform, Compose) else []
    env.close()
    return TransformedEnv(vmas, Compose(StepCounter(max_steps), *transforms))


def is_vmas(task: TaskClass) -> bool:
    return isinstance(task, VmasClass)


def simulator_of(env: EnvBase):
    """The VMAS simulator under ``env``; a clear error if there is none."""
    simulator = vmas_environment(env)
    if simulator is None:
        raise TypeError(f"Expected a VMAS environment, got {type(env).__name__}.")
    return simulator


class WindowStartDetach(TensorDictModuleBase):
    """Cuts the autograd graph of the observations a rollout starts from, once per window.

    BenchMARL's ``collect_with_grad`` loop carries the last step of a rollout into the next one without detaching
    it, so the next window's actions would hang on the previous window's freed graph. Put first in the collection
    policy, this module replaces its input's leaves by detached ones on the first call that carries a graph after :meth:`cut` was
    called (the first step of the next training rollout; evaluation rollouts run without autograd and leave it
    armed), and is the identity otherwise.
    """

    in_keys: list = []
    out_keys: list = []

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def cut(self) -> None:
        """Arms the cut for the next graph-carrying input."""
        self.armed = True

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        carrying = [key for key, leaf in tensordict.items(True, True) if leaf.requires_grad]
        if self.armed and carrying:
            for key in carrying:  # replaced, not detached in place: the leaves may be views of the last window
                tensordict.set(key, tensordict.get(key).detach())
            self.armed = False
        return tensordict
