r"""Does the observation determine the simulator's one-step action Jacobian? An upper bound for SHAC++'s world model.

SHAC++'s actor uses its world model only through the action Jacobian :math:`\partial \hat o_{t+1} / \partial a_t`,
and a model of :math:`(o_t, a_t)` can only get it right where :math:`o_t` determines VMAS's
:math:`J_t = \partial o_{t+1} / \partial a_t`. This script measures how far it does, with the answer given: on
transitions of uniformly random actions of a VMAS task, it takes VMAS's exact one-step Jacobian of each named block of
observation features (:math:`\partial (\sum_i o_{t+1, i, f}) / \partial a_{t, j}`, the alignment probe's measure) and
fits it by supervised regression from the agent's observation :math:`o_{t, j}` (an MLP, 3 hidden layers of 256,
SiLU). Per block it reports on held-out transitions:

* ``R²``: one minus the squared error over the variance of the Jacobian's entries;
* ``cos``: the cosine between the predicted and the exact Jacobian over all held-out entries (the measure that
  ``shacpp_gradient_alignment.py --feature-block`` and ``transition_model_fit.py`` report for the world model, there
  chained over a rollout);
* before the table, per block, the share of the one-step change's variance that is the action's first-order effect
  :math:`J_{t, j} a_{t, j}` on the agent's own features: the signal from which a model fitted to the change must
  learn its action Jacobian;
* ``cos, own state``: the same, with the regression reading nothing but the agent's own kinematic features
  (``--kinematics``), the part of the Jacobian that needs no sensor reading.

A block whose Jacobian the observation determines (R² and cosine near 1) can be learned by a model of
:math:`(o, a)` in principle, and a world model that misses it (``transition_model_fit.md``) misses it for want of
signal in the one-step change, not of information. A block whose Jacobian it does not determine bounds every such
model from above, whatever its loss, size or data.

Usage (the table in results/action_jacobian_identifiability.md)::

    python benchmarks/action_jacobian_identifiability.py --task sampling --kinematics 0:4 \
        --block pos=0:2 --block vel=2:4 --block lidar=4:16 --block samples=16:24
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from torchrl_shacpp.envs import make_vmas_env

sys.path.insert(0, str(Path(__file__).parent))
from shacpp_gradient_alignment import cosine, feature_block, flat_gradient  # noqa: E402

OBSERVATION, ACTION = ("agents", "observation"), ("agents", "action")


def feature_slice(text: str) -> slice:
    """``START:STOP`` from the command line: a slice of observation features."""
    return feature_block(f"features={text}")[1]


def one_step_jacobians(task: str, count: int, n_agents: int, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""``count`` shuffled env steps :math:`(o_t, a_t, o_{t+1}, J_t)` (shapes ``[count, n_agents, F]``,
    ``[count, n_agents, A]``, ``[count, n_agents, F]``, ``[count, n_agents, F, A]``): the agents' observations,
    uniformly random in-box actions, the next observations (before any reset), and VMAS's one-step
    Jacobian :math:`J_{t, j, f} = \partial (\sum_i o_{t+1, i, f}) / \partial a_{t, j}`, along rollouts (64 envs,
    100-step episodes)."""
    env = make_vmas_env(task, num_envs=64, n_agents=n_agents, seed=seed, grad_enabled=True)
    observations, actions, next_observations, jacobians, collected = [], [], [], [], 0
    tensordict = env.reset()
    while collected < count:
        # only this step's action carries a gradient: the Jacobian is the one step's, not the chain's
        action = env.full_action_spec[ACTION].rand().requires_grad_()
        observation = tensordict[OBSERVATION].detach()
        stepped, tensordict = env.step_and_maybe_reset(tensordict.set(ACTION, action))
        next_observation = stepped["next", *OBSERVATION]
        observations.append(observation)
        actions.append(action.detach())
        next_observations.append(next_observation.detach())
        jacobians.append(action_jacobian(next_observation, action))
        collected += observation.shape[0]
        tensordict = tensordict.detach()
    index = torch.randperm(collected)[:count]
    return tuple(torch.cat(parts)[index] for parts in (observations, actions, next_observations, jacobians))


def action_jacobian(next_observation: Tensor, action: Tensor) -> Tensor:
    r""":math:`\partial (\sum_{b, i} o'_{b, i, f}) / \partial a_{b, j}` for every feature ``f``, shaped
    ``[*batch, n_agents, F, A]`` (zero where a feature does not depend on the action)."""
    rows = [flat_gradient(next_observation[..., f].sum(), [action]) for f in range(next_observation.shape[-1])]
    return torch.stack([row.view_as(action) for row in rows], -2).detach()


def fit(inputs: Tensor, targets: Tensor, train: slice, steps: int, seed: int) -> Tensor:
    """An MLP (3 hidden layers of 256, SiLU) fitted by Adam (1e-3, minibatch 1,000) from ``inputs`` to ``targets``
    on the ``train`` rows, standardised both ways; its predictions on every row."""
    torch.manual_seed(seed)
    in_mean, in_std = inputs[train].mean(0), inputs[train].std(0) + 1e-6
    out_mean, out_std = targets[train].mean(0), targets[train].std(0) + 1e-6
    network = nn.Sequential(
        nn.Linear(inputs.shape[-1], 256), nn.SiLU(), nn.Linear(256, 256), nn.SiLU(),
        nn.Linear(256, 256), nn.SiLU(), nn.Linear(256, targets.shape[-1]),
    )  # fmt: skip
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    x, y = (inputs - in_mean) / in_std, (targets - out_mean) / out_std
    rows = x[train].shape[0]
    for _ in range(steps):
        index = torch.randint(0, rows, (1000,))
        loss = (network(x[train][index]) - y[train][index]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return network(x) * out_std + out_mean


def main(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    observation, action, next_observation, jacobian = one_step_jacobians(
        args.task, 2 * args.transitions, args.n_agents, args.seed
    )
    # the action's first-order effect on the agent's own features, J a: what a model must find in the change
    driven = (jacobian @ action.unsqueeze(-1)).squeeze(-1).flatten(0, 1)
    change = (next_observation - observation).flatten(0, 1)
    observation, jacobian = observation.flatten(0, 1), jacobian.flatten(0, 1)
    # rows are (env step, agent), env step major: the first half of the env steps trains, the second is held out
    train, held_out = slice(0, args.transitions * args.n_agents), slice(args.transitions * args.n_agents, None)
    print(f"### {args.task} n={args.n_agents}: VMAS's one-step action Jacobian fitted from the observation, "
          f"{args.transitions} random-action transitions (as many held out), {args.steps} Adam steps\n")  # fmt: skip
    signal = ", ".join(
        f"{name} {driven[:, block].var(0).sum() / change[:, block].var(0).sum():.1%}" for name, block in args.block
    )
    print(f"Share of the one-step change's variance that is the action's first-order effect J a: {signal}\n")
    readers = {"the observation": observation}
    if args.kinematics is not None:
        readers["own kinematics only"] = observation[..., args.kinematics]
    header = " | ".join(f"{name}: R² / cos" for name, _ in args.block)
    print(f"| regression reads | {header} | share of the Jacobian's square |")
    print("|---|" + "---:|" * len(args.block) + "---|")
    total = jacobian[held_out].pow(2).sum()
    shares = " / ".join(f"{name} {jacobian[held_out][:, block].pow(2).sum() / total:.0%}" for name, block in args.block)
    for reader, inputs in readers.items():
        cells = []
        for _, block in args.block:
            target = jacobian[:, block].flatten(1)
            predicted = fit(inputs, target, train, args.steps, args.seed)[held_out]
            error = (predicted - target[held_out]).pow(2).sum()
            spread = (target[held_out] - target[held_out].mean(0)).pow(2).sum()
            agreement = cosine(predicted.flatten(), target[held_out].flatten())
            cells.append(f"{1 - (error / spread).item():.2f} / {agreement:.2f}")
        print(f"| {reader} | " + " | ".join(cells) + f" | {shares} |", flush=True)
    print(f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="sampling", help="a VMAS task of torchrl_shacpp.envs.make_vmas_env")
    parser.add_argument("--n-agents", type=int, default=3)
    parser.add_argument("--block", type=feature_block, action="append", required=True, metavar="NAME=START:STOP")
    parser.add_argument("--kinematics", type=feature_slice, metavar="START:STOP",
                        help="also fit from these features alone (the agent's own position and velocity)")  # fmt: skip
    parser.add_argument("--transitions", type=int, default=30_000, help="training transitions (as many held out)")
    parser.add_argument("--steps", type=int, default=3000, help="Adam steps of each regression")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    return parser


if __name__ == "__main__":
    main(parser().parse_args())
