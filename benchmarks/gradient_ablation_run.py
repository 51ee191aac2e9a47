"""``python -m torchrl_shacpp.benchmarl.run`` with one path of the gradient taken away.

Ablations of SHAC's and SHAC+'s exact-dynamics gradient, to tell which of its paths a learned model must supply,
and of what SHAC+'s and SHAC++'s learned models read:

* ``--detach-lidar``: VMAS's lidar readings carry no gradient (the other observation features and the contacts
  still do). SHAC+ so ablated gets from the simulator what SHAC++'s world model gets right on navigation (its
  kinematics, not its lidar: ``results/shacpp_gradient_alignment.md``, ``results/transition_model_fit.md``).
* ``--open-loop``: the collection policy reads detached observations, so a later action does not react to what an
  earlier one changed; the rewards and the critic's bootstrap keep the simulator's gradient. This is the gradient
  SHAC++'s spliced world model gives (its policy graph is re-attached on the real, detached observations).
* ``--hide-block NAME=START:STOP --hide-from reward [--hide-from critic]``: the reward model (and the critic) read
  the observations with those features zeroed, in training and in the actor's loss, so they must score the rewards
  from the other features, and their gradient runs through those only (navigation: the collision from the agents'
  positions, whose dynamics SHAC++'s world model has, instead of from the lidar, whose dynamics it lacks).

Everything after the flags goes to hydra, as for ``torchrl_shacpp.benchmarl.run``::

    python benchmarks/gradient_ablation_run.py --detach-lidar algorithm=shacp experiment=shacpp_cpu \\
        task=vmas/navigation seed=0
"""

from __future__ import annotations

import argparse
import runpy
import sys

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from vmas.simulator.sensors import Lidar

from first_actor_steps import detach_output
from shacpp_gradient_alignment import feature_block
from torchrl_shacpp.benchmarl import networks
from torchrl_shacpp.benchmarl.algorithms.shac import Shac

#: The network builders of :mod:`torchrl_shacpp.benchmarl.networks` that ``--hide-from`` wraps.
MODEL_BUILDERS = {"reward": "reward_model", "critic": "critic"}


def observation_keys(tensordict: TensorDictBase) -> list[tuple[str, ...]]:
    """The ``(group, ..., "observation")`` entries of a BenchMARL tensordict, under ``"next"`` too."""
    return [key for key in tensordict.keys(True, True) if isinstance(key, tuple) and key[-1] == "observation"]


class OpenLoopPolicy(TensorDictModuleBase):
    """Runs ``policy`` on detached copies of the observations and writes its outputs (not the observations) back."""

    def __init__(self, policy: TensorDictModule) -> None:
        super().__init__()
        self.policy = policy
        self.in_keys, self.out_keys = policy.in_keys, policy.out_keys

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        observations = observation_keys(tensordict)
        detached = tensordict.copy()
        for key in observations:
            detached.set(key, tensordict.get(key).detach())
        return tensordict.update(self.policy(detached).exclude(*observations))


def open_loop_collection_policy(
    self: Shac, policy_for_loss: TensorDictModule, group: str, continuous: bool
) -> TensorDictModule:
    """SHAC's collection policy (BenchMARL's ``Algorithm._get_policy_for_collection``) reading detached observations."""
    return TensorDictSequential(self.graph_cut, OpenLoopPolicy(policy_for_loss))


class HiddenFeatures(TensorDictModuleBase):
    """Runs ``module`` on a copy of the tensordict whose observations have the features ``block`` zeroed, and writes
    its outputs back."""

    def __init__(self, module: TensorDictModuleBase, block: slice) -> None:
        super().__init__()
        self.module, self.block = module, block
        self.in_keys, self.out_keys = module.in_keys, module.out_keys

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        hidden = tensordict.copy()
        for key in observation_keys(tensordict):
            observation = tensordict.get(key)
            visible = torch.ones(observation.shape[-1], dtype=observation.dtype, device=observation.device)
            visible[self.block] = 0
            hidden.set(key, observation * visible)
        return tensordict.update(self.module(hidden).select(*self.module.out_keys, strict=False))


def hide_from(builder: str, block: slice) -> None:
    """Makes ``networks.<builder>`` return its network wrapped in :class:`HiddenFeatures`."""
    build = getattr(networks, builder)

    def hidden(*args, **kwargs) -> TensorDictModuleBase:
        return HiddenFeatures(build(*args, **kwargs), block)

    setattr(networks, builder, hidden)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detach-lidar", action="store_true", help="VMAS's lidar readings carry no gradient")
    parser.add_argument("--open-loop", action="store_true", help="the collection policy reads detached observations")
    parser.add_argument("--hide-block", type=feature_block, metavar="NAME=START:STOP", help="features to hide")
    parser.add_argument(
        "--hide-from", choices=sorted(MODEL_BUILDERS), action="append", default=[],
        help="a learned model that reads the observations without --hide-block's features (repeatable)",
    )  # fmt: skip
    args, hydra_arguments = parser.parse_known_args()
    if bool(args.hide_block) != bool(args.hide_from):
        parser.error("--hide-block and --hide-from go together")
    if args.detach_lidar:
        Lidar.measure = detach_output(Lidar.measure)
    if args.open_loop:
        Shac._get_policy_for_collection = open_loop_collection_policy
    for model in args.hide_from:
        hide_from(MODEL_BUILDERS[model], args.hide_block[1])
    sys.argv = [sys.argv[0], *hydra_arguments]
    runpy.run_module("torchrl_shacpp.benchmarl.run", run_name="__main__")


if __name__ == "__main__":
    main()
