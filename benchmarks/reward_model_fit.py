r"""Does SHAC+/SHAC++'s reward model learn a task's dense reward beside its rare large ones?

Collects transitions of the untrained BenchMARL policy (the SHAC family's set-up, its clamped sigma = 1 actions) on a
BenchMARL task, holds out half, and fits SHAC++'s reward model as the overrides configure it (its loss, its
``critic_model`` network: by default over all agents' ``(o, a)`` with one pooled output, with
``algorithm.reward_centralised=false`` per agent on its own; Adam at ``--lr``, by default the algorithms' ``model_lr``
3e-3; minibatch 1,000). ``--huber-delta`` is short for ``algorithm.reward_huber_delta``. At each listed step it
prints, on the held-out transitions:

* ``corr``: the correlation of the predicted with the real reward, over every transition and over the dense ones
  alone (every agent's reward above ``--rare-below``, e.g. navigation without its -1 collision penalties), and over
  the dense ones of the agents' mean reward, all that a pooled model can predict (and all the actor's objective, a
  sum over the agents, needs);
* with ``--goal`` and ``--velocity`` (feature slices of the observation): the mean cosine between the model's gradient
  with respect to the agent's velocity and the direction to its goal (the goal feature being ``position - goal``).
  Navigation's dense reward is the progress :math:`d_t - d_{t+1}` towards the goal, about
  :math:`0.1\,u\cdot(0.75\,v_t + 0.1\,a_t)` with :math:`u` the unit vector to the goal: its exact velocity gradient
  is along :math:`u` (cosine 1).
* with ``--position`` and ``--velocity``: over the agents whose nearest other agent is closer than ``--near``, the
  mean cosine between the gradient of the agents' summed predicted reward (the actor's objective) with respect to
  the agent's velocity and the direction away from that neighbour. A collision penalty seen through the agents'
  motion gives a positive cosine: moving towards a neighbour lowers the reward. The velocity is the path the world
  model passes on (it learns no lidar Jacobian, ``results/transition_model_fit.md``): a model must learn how the
  velocity's effect depends on where its lidar (or the others' positions) shows the neighbour. ``--position``
  slices the absolute position (navigation: 0:2), used only to find the neighbours.

``--rewarded-share F`` draws that share of each minibatch from the training transitions where an agent's reward is
nonzero, as SHAC++'s reward-stratified cache oversamples them on a sparse reward (dispersion).

Example (``results/navigation_reward_model.md``; ``results/dispersion/README.md`` for dispersion)::

    python benchmarks/reward_model_fit.py --task vmas/navigation --goal 4:6 --velocity 2:4 [--huber-delta 0.05] \
        [algorithm.reward_centralised=false] [--position 0:2 --near 0.3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from tensordict import TensorDictBase

sys.path.insert(0, str(Path(__file__).parent))
from action_jacobian_identifiability import feature_slice  # noqa: E402
from benchmarl_experiment import compose_experiment  # noqa: E402


def collect(task: str, overrides: list[str], frames: int, group: str) -> tuple[object, TensorDictBase]:
    """The set-up experiment and ``frames`` env steps of its untrained policy, flattened to transitions."""
    experiment = compose_experiment(task, overrides, callbacks=[])
    keys = [(group, "observation"), (group, "action"), ("next", group, "reward")]
    batches, collected = [], 0
    for batch in experiment.collector:
        batches.append(batch.detach().select(*keys).reshape(-1))
        collected += batches[-1].numel()
        if collected >= frames:
            break
    return experiment, torch.cat(batches)


def correlation(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """Pearson's correlation of two equally shaped tensors over all their entries."""
    return torch.corrcoef(torch.stack([predicted.flatten(), target.flatten()]))[0, 1].item()


def away_from_nearest(position: torch.Tensor, near: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per agent (``position`` ``[..., n_agents, 2]``), the unit vector from its nearest other agent to it, and
    whether that agent is nearer than ``near``."""
    offset = position.unsqueeze(-2) - position.unsqueeze(-3)  # [..., i, j, 2]: p_i - p_j
    distance = offset.norm(dim=-1).masked_fill(torch.eye(position.shape[-2], dtype=torch.bool), torch.inf)
    nearest = distance.argmin(-1, keepdim=True)
    away = offset.gather(-2, nearest.unsqueeze(-1).expand(*nearest.shape, 2)).squeeze(-2)
    return torch.nn.functional.normalize(away, dim=-1), distance.gather(-1, nearest).squeeze(-1) < near


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="vmas/navigation", help="a BenchMARL task, e.g. vmas/navigation")
    parser.add_argument("--frames", type=int, default=61_440, help="env steps collected (half held out)")
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 300, 1000, 3000], help="cumulative Adam steps")
    parser.add_argument("--huber-delta", type=float, default=None, help="Huber's loss at this residual (else l2)")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate (the algorithms' model_lr)")
    parser.add_argument("--rare-below", type=float, default=-0.5, help="a transition with a reward below is rare")
    parser.add_argument("--goal", type=feature_slice, default=None, help="observation slice: position - goal")
    parser.add_argument("--velocity", type=feature_slice, default=None, help="observation slice: velocity")
    parser.add_argument("--position", type=feature_slice, default=None, help="observation slice: absolute position")
    parser.add_argument("--near", type=float, default=0.3, help="a neighbour closer than this is near")
    parser.add_argument(
        "--rewarded-share", type=float, default=0.0,
        help="share of each minibatch drawn from the training transitions where an agent's reward is nonzero (as "
        "the reward-stratified cache oversamples them); 0: uniform",
    )
    parser.add_argument("--group", default="agents")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help="BenchMARL overrides, e.g. task.n_agents=2")
    args = parser.parse_args()
    if not 0 <= args.rewarded_share <= 1:
        parser.error(f"--rewarded-share is a share of each minibatch, in [0, 1]; got {args.rewarded_share}")
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as save_folder:  # BenchMARL's run folder, of no use here
        overrides = [
            "algorithm=shacpp", "experiment=shacpp_cpu", "experiment.loggers=[]", "experiment.render=false",
            "experiment.checkpoint_interval=0", f"experiment.save_folder={save_folder}", f"seed={args.seed}",
            *([f"algorithm.reward_huber_delta={args.huber_delta}"] if args.huber_delta is not None else []),
            *args.overrides,
        ]  # fmt: skip
        experiment, data = collect(args.task, overrides, args.frames, args.group)
    data = data[torch.randperm(len(data))]
    half = len(data) // 2
    train, held_out = data[:half], data[half:]
    observation_key, reward_key = (args.group, "observation"), ("next", args.group, "reward")
    reward = held_out.get(reward_key)
    dense = (reward >= args.rare_below).all(-2).squeeze(-1)
    print(f"{half} training transitions; rare (a reward below {args.rare_below}): "
          f"{(~dense).float().mean():.2%} of the held-out ones")  # fmt: skip
    rewarded = train.get(reward_key).ne(0).any(-2).flatten().nonzero().squeeze(-1)
    n_rewarded = round(args.rewarded_share * 1000)
    print(f"rewarded (an agent's reward nonzero): {len(rewarded)} training transitions, "
          f"{(reward.ne(0).any(-2)).float().mean():.2%} of the held-out ones")
    if n_rewarded and not len(rewarded):
        parser.error(f"--rewarded-share {args.rewarded_share}: no training transition has a nonzero reward; collect "
                     "more --frames or leave the option out")

    loss = experiment.algorithm.reward_loss(args.group)
    network = loss.reward_model
    optimizer = torch.optim.Adam(network.parameters(), lr=args.lr)
    away, near = None, None
    if args.position is not None:
        away, near = away_from_nearest(held_out.get(observation_key)[..., args.position], args.near)
        print(f"agents with a neighbour nearer than {args.near}: {near.float().mean():.2%} of the held-out ones")
    columns = [
        "steps", "corr (all)", "corr (dense)", "corr (dense, agents' mean)", "cos(∂R/∂v, goal)", "cos(∂R/∂v, away)"
    ]
    print("| " + " | ".join(columns) + " |")
    print("|---:" * len(columns) + "|")
    done = 0
    for steps in args.steps:
        for _ in range(done, steps):
            index = torch.randint(0, half, (1000 - n_rewarded,))
            if n_rewarded:
                index = torch.cat([index, rewarded[torch.randint(0, len(rewarded), (n_rewarded,))]])
            minibatch = train[index]
            optimizer.zero_grad()
            loss(minibatch)["loss_reward"].backward()
            optimizer.step()
        done = steps
        batch = held_out.clone(False)
        observation = batch.get(observation_key).clone().requires_grad_(True)
        batch.set(observation_key, observation)
        predicted = network(batch).get((args.group, "predicted_reward"))
        (gradient,) = torch.autograd.grad(predicted.sum(), observation)
        predicted = predicted.detach()
        every = correlation(predicted, reward)
        dense_corr = correlation(predicted[dense], reward[dense])
        mean_corr = correlation(predicted[dense].mean(-2), reward[dense].mean(-2))
        cosine = "–"
        if args.goal is not None and args.velocity is not None:
            to_goal = -held_out.get(observation_key)[..., args.goal]
            cosine = f"{torch.nn.functional.cosine_similarity(gradient[..., args.velocity], to_goal, -1).mean():.2f}"
        repulsion = "–"
        if away is not None and args.velocity is not None:
            cosines = torch.nn.functional.cosine_similarity(gradient[..., args.velocity], away, -1)
            repulsion = f"{cosines[near].mean():.2f}"
        print(f"| {steps} | {every:.2f} | {dense_corr:.2f} | {mean_corr:.2f} | {cosine} | {repulsion} |", flush=True)


if __name__ == "__main__":
    main()
