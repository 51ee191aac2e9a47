"""A collector of short-horizon windows that keeps, and cleanly cuts, the autograd graph."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Literal

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.collectors import BaseCollector
from torchrl.envs import EnvBase, ExplorationType, set_exploration_type

from torchrl_shacpp.checks import check_count
from torchrl_shacpp.envs import detach_simulator_state, set_simulator_grad

GraphMode = Literal["simulator", "policy", "none"]


class WindowCollector(BaseCollector):
    r"""Collects windows of ``window_length`` steps from a batched TorchRL env, with or without the autograd graph.

    Each window is a ``[*B, h]`` TensorDict (the last batch dimension is named ``"time"``) holding, for every
    step, the observation, the policy outputs (``action``, ``loc``, …) and the ``"next"`` entries of the env
    (reward, pre-reset next observation, ``done``, ``terminated`` and, with a
    :class:`~torchrl.envs.StepCounter`, ``truncated``). Environments continue across windows; done environments
    are reset individually inside the window, and all of them every ``reset_every`` windows.

    The ``graph`` mode decides what the window is differentiable through:

    * ``"simulator"`` (SHAC, SHAC+): policy and simulator run with autograd, so rewards and observations are
      functions of the policy parameters through the simulator's dynamics. The simulator's gradients are switched
      on (VMAS ``grad_enabled``).
    * ``"policy"`` (SHAC++): the simulator runs without autograd, but the actions keep their graph to the policy
      parameters, for gradients through a learned world model.
    * ``"none"``: everything under :func:`torch.no_grad` (evaluation, value-only data).

    At every window start the graph is cut: the carried observations are detached and so is the simulator's
    internal state (``cut_graph``; for VMAS, :func:`~torchrl_shacpp.envs.detach_simulator_state`), so that a
    window's gradient never reaches the actions of an earlier window and ``backward`` never traverses a freed graph.
    A reset gives a fresh state with no graph to the previous episode.

    Args:
        env (EnvBase): a batched env; its batch size is the number of parallel environments B.
        policy (TensorDictModuleBase): reads observations, writes actions (e.g. a ``ProbabilisticActor``).

    Keyword Args:
        window_length (int): h, steps per window (paper: 32).
        total_frames (int): stop after this many env steps (``B·h`` per window); -1 runs forever. Defaults to -1.
        reset_every (int, optional): reset every env every this many windows (paper: 10); ``None`` never forces it.
        graph (str): ``"simulator"``, ``"policy"`` or ``"none"``. Defaults to ``"simulator"``.
        exploration_type (ExplorationType): how the policy acts; ``RANDOM`` samples with ``rsample``, which keeps
            the pathwise gradient. Defaults to ``ExplorationType.RANDOM``.
        cut_graph (Callable[[EnvBase], None]): detaches the env's internal state in place at window starts.
            Defaults to :func:`~torchrl_shacpp.envs.detach_simulator_state` (a no-op for envs that are not VMAS).

    Examples:
        >>> collector = WindowCollector(env, policy, window_length=32, graph="simulator")
        >>> for window in collector:
        ...     loss = actor_loss(window)["loss_actor"]
    """

    def __init__(
        self,
        env: EnvBase,
        policy: TensorDictModuleBase,
        *,
        window_length: int,
        total_frames: int = -1,
        reset_every: int | None = 10,
        graph: GraphMode = "simulator",
        exploration_type: ExplorationType = ExplorationType.RANDOM,
        cut_graph: Callable[[EnvBase], None] = detach_simulator_state,
    ) -> None:
        if graph not in ("simulator", "policy", "none"):
            raise ValueError(f"graph must be 'simulator', 'policy' or 'none'; got {graph!r}.")
        check_count("window_length", window_length, hint="It is the number of steps per window (paper: 32).")
        if reset_every is not None:
            check_count("reset_every", reset_every, hint="It is a number of windows (paper: 10); None never forces it.")
        self.env = env
        self.policy = policy
        self.window_length = window_length
        self.frames_per_batch = self.requested_frames_per_batch = env.batch_size.numel() * window_length
        self.total_frames = total_frames
        self.reset_every = reset_every
        self.graph = graph
        self.exploration_type = exploration_type
        self.cut_graph = cut_graph
        set_simulator_grad(env, graph == "simulator")
        self._carried: TensorDictBase | None = None
        self._windows = 0
        self._frames = 0

    def _window_start(self) -> TensorDictBase:
        if self._carried is None or (self.reset_every and self._windows % self.reset_every == 0):
            return self.env.reset()
        self.cut_graph(self.env)
        return self._carried.detach()

    def rollout(self) -> TensorDictBase:
        """Collects one ``[*B, h]`` window."""
        tensordict = self._window_start()
        simulator_grad = contextlib.nullcontext if self.graph == "simulator" else torch.no_grad
        steps = []
        with set_exploration_type(self.exploration_type), torch.set_grad_enabled(self.graph != "none"):
            for _ in range(self.window_length):
                tensordict = self.policy(tensordict)
                with simulator_grad():
                    step, tensordict = self.env.step_and_maybe_reset(tensordict)
                steps.append(step)
        self._carried = tensordict
        self._windows += 1
        window = torch.stack(steps, dim=self.env.batch_dims)
        return window.refine_names(*([None] * self.env.batch_dims), "time")

    def iterator(self) -> Iterator[TensorDictBase]:
        while self.total_frames < 0 or self._frames < self.total_frames:
            window = self.rollout()
            self._frames += window.numel()
            yield window

    def set_seed(self, seed: int, static_seed: bool = False) -> int:
        return self.env.set_seed(seed, static_seed=static_seed)

    def state_dict(self) -> OrderedDict:
        return OrderedDict(windows=self._windows, frames=self._frames, env_state_dict=self.env.state_dict())

    def load_state_dict(self, state_dict: OrderedDict) -> None:
        self._windows = state_dict["windows"]
        self._frames = state_dict["frames"]
        self.env.load_state_dict(state_dict["env_state_dict"])
        # The simulator state cannot be restored; start the next window from a reset.
        self._carried = None

    def shutdown(self, timeout: float | None = None, close_env: bool = True) -> None:
        if close_env and not self.env.is_closed:
            self.env.close()
