"""Non-finite values from the simulator: the faulty envs are reset, and non-finite actions never reach it."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.envs import Transform

from torchrl_shacpp.data import finite_items


class ResetNonFinite(Transform):
    """Ends the episode of every env whose step returned a non-finite value, so that it is reset; refuses non-finite
    actions before the simulator sees them.

    A NaN or an infinity in an observation or a reward (a diverged simulation, a broken scenario) would otherwise be
    carried into the next step: the policy would act on it and VMAS would stop at its bare
    ``assert not action.isnan().any()``. After such a step this transform marks the env's episode as truncated
    (``truncated`` and ``done``), so that TorchRL's ``step_and_maybe_reset`` (collectors, ``rollout``) resets that env
    alone, as at a time limit; the faulty step's data stay in the batch, for the learner to drop
    (:class:`~torchrl_shacpp.trainers.WindowUpdate` counts and drops them). :attr:`resets` counts the envs reset so.

    An action that is still not finite (the policy's input after a reset was not finite) raises a :class:`ValueError`
    that names the envs, instead of VMAS's bare assertion.

    Put it after the :class:`~torchrl.envs.StepCounter` that writes ``truncated``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.resets = 0

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        faulty = ~finite_items(next_tensordict, self.parent.batch_dims)
        if not faulty.any():
            return next_tensordict
        self.resets += int(faulty.sum())
        for key in self.parent.done_keys:
            name = key if isinstance(key, str) else key[-1]
            flag = next_tensordict.get(key, None)
            if name in ("done", "truncated") and flag is not None:
                extra = (1,) * (flag.ndim - faulty.ndim)
                next_tensordict.set(key, flag | faulty.reshape(*faulty.shape, *extra).expand_as(flag))
        return next_tensordict

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        for key in self.parent.action_keys:
            action = tensordict.get(key, None)
            if action is None or not action.is_floating_point():
                continue
            finite = torch.isfinite(action.detach()).reshape(*self.parent.batch_size, -1).all(-1)
            if not finite.all():
                envs = (~finite).nonzero().squeeze(-1).tolist()
                raise ValueError(
                    f"Non-finite actions under {key!r} for envs {envs[:10]}{' ...' if len(envs) > 10 else ''}: the "
                    "policy's input or parameters are not finite (an env that returned a non-finite value is reset "
                    "after that step, so its reset observation was not finite either). Check the scenario's "
                    "observations and rewards."
                )
        return tensordict
