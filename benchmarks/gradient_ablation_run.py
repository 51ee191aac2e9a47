"""``python -m torchrl_shacpp.benchmarl.run`` with one path of the simulator's gradient taken away.

An ablation of SHAC's and SHAC+'s exact-dynamics gradient, to tell which of its paths a learned model must supply:

* ``--detach-lidar``: VMAS's lidar readings carry no gradient (the other observation features and the contacts
  still do). SHAC+ so ablated gets from the simulator what SHAC++'s world model gets right on navigation (its
  kinematics, not its lidar: ``results/shacpp_gradient_alignment.md``, ``results/transition_model_fit.md``).
* ``--open-loop``: the collection policy reads detached observations, so a later action does not react to what an
  earlier one changed; the rewards and the critic's bootstrap keep the simulator's gradient. This is the gradient
  SHAC++'s spliced world model gives (its policy graph is re-attached on the real, detached observations).

Everything after the flags goes to hydra, as for ``torchrl_shacpp.benchmarl.run``::

    python benchmarks/gradient_ablation_run.py --detach-lidar algorithm=shacp experiment=shacpp_cpu \\
        task=vmas/navigation seed=0
"""

from __future__ import annotations

import argparse
import runpy
import sys

from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from vmas.simulator.sensors import Lidar

from first_actor_steps import detach_output
from torchrl_shacpp.benchmarl.algorithms.shac import Shac


class OpenLoopPolicy(TensorDictModuleBase):
    """Runs ``policy`` on detached copies of the observations and writes its outputs (not the observations) back."""

    def __init__(self, policy: TensorDictModule) -> None:
        super().__init__()
        self.policy = policy
        self.in_keys, self.out_keys = policy.in_keys, policy.out_keys

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        observations = [key for key in tensordict.keys(True, True) if isinstance(key, tuple) and key[-1] == "observation"]
        detached = tensordict.copy()
        for key in observations:
            detached.set(key, tensordict.get(key).detach())
        return tensordict.update(self.policy(detached).exclude(*observations))


def open_loop_collection_policy(
    self: Shac, policy_for_loss: TensorDictModule, group: str, continuous: bool
) -> TensorDictModule:
    """SHAC's collection policy (BenchMARL's ``Algorithm._get_policy_for_collection``) reading detached observations."""
    return TensorDictSequential(self.graph_cut, OpenLoopPolicy(policy_for_loss))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detach-lidar", action="store_true", help="VMAS's lidar readings carry no gradient")
    parser.add_argument("--open-loop", action="store_true", help="the collection policy reads detached observations")
    args, hydra_arguments = parser.parse_known_args()
    if args.detach_lidar:
        Lidar.measure = detach_output(Lidar.measure)
    if args.open_loop:
        Shac._get_policy_for_collection = open_loop_collection_policy
    sys.argv = [sys.argv[0], *hydra_arguments]
    runpy.run_module("torchrl_shacpp.benchmarl.run", run_name="__main__")


if __name__ == "__main__":
    main()
