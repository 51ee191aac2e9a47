r"""Does one SHAC++ actor step move the policy's actions the way its gradient asks, on the windows it trains on?

SHAC++'s actor objective :math:`L` asks each action of a window to move along its ascent :math:`g_s = -\partial L /
\partial a_s`. A step of the policy's parameters moves every state's mean action at once, by
:math:`\Delta\mu_s \approx J_s \Delta\theta`: on the window it was taken on, and on every other state the policy
visits. This probe reloads a BenchMARL SHAC++ checkpoint (``experiment.checkpoint_at_end=true``) with its actor's
Adam state and the windows its actor replays (the last ``algorithm.actor_replay_windows`` collected windows), and for
each of those windows takes the step training would take on it (the run's loss, clip and Adam state), measures
:math:`\Delta\mu` on all the replayed windows' states, and undoes it. Per window and step rule it reports:

* ``cos on its window``: the cosine of :math:`\Delta\mu` with :math:`g` over the window's own actions (the step's
  first-order gain there, normalised);
* ``cos on the others``: the same over the other windows' actions, their own ascents: does a step on one window of 8
  envs improve the objective of the windows beside it, or only its own?
* ``cos(Δμ, goal)`` on the deterministic evaluation episodes' agents alone at 0.2-0.4 from their goals (with
  ``--goal``; navigation: ``4:6``, the ``pos - goal`` features): where the policy stalls, does the step move it in?

Step rules: ``adam`` (the run's optimiser from its saved state: the step training takes, 90% of it the momentum of
the steps before), ``sgd`` (the window's gradient alone, scaled to Adam's step's norm in parameter space). The same
numbers for one step on the mean objective of all the replayed windows (``mean step``) tell how much of a single
window's step is its own noise. With ``--goal`` it also prints ``|Δμ|``, the step's size in action space at those
states, beside the mean action's size there ``|μ|``.

    python benchmarks/actor_step_probe.py runs/nav_s2 runs/nav_s1 --goal 4:6
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from pathlib import Path

import torch
from benchmarl.experiment import Experiment
from benchmarl.hydra_config import reload_experiment_from_file
from tensordict import TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_shacpp.trainers import actor_objective

sys.path.insert(0, str(Path(__file__).parent))
from action_jacobian_identifiability import feature_slice  # noqa: E402
from navigation_endings import ALONE, LIDAR_FEATURES, LIDAR_RANGE, first_episodes, latest_checkpoint  # noqa: E402

NEAR_GOAL = (0.2, 0.4)


def flat_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


class StepProbe:
    """One group's actor, loss, step and replayed windows from a reloaded SHAC++ experiment."""

    def __init__(self, experiment: Experiment, group: str) -> None:
        update = experiment.algorithm.update
        self.groups = update.groups[group]
        self.source = self.groups.source
        self.step = self.groups.actor_step
        self.windows = [update.actor_replay.storage[i] for i in range(len(update.actor_replay))]
        if len(self.windows) < 2:
            raise SystemExit("The checkpoint holds fewer than 2 replayed windows: the probe needs a run with "
                             "algorithm.actor_replay_steps > 0.")  # fmt: skip
        self.action_key = self.source.keys["action_key"]
        self.loc_key = self.source.keys["loc_key"]

    def loss(self, window: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
        """The run's actor loss on ``window`` and its ascent w.r.t. the window's actions."""
        attached = self.source.differentiable_window(window)
        losses = self.groups.actor_loss(attached)
        loss = actor_objective(losses)
        action = attached.get(self.action_key)
        (ascent,) = torch.autograd.grad(-losses["loss_actor"], action, retain_graph=True)
        return loss, ascent

    def means(self, observations: TensorDictBase) -> torch.Tensor:
        """The policy's mean action on ``observations``, without a graph."""
        with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
            return self.source.actor.get_dist_params(observations.copy()).get(self.loc_key)

    def moved(
        self, loss: torch.Tensor, rule: str, states: list[TensorDictBase], means: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """The change of the mean action on each of ``states`` (``means`` before it) after one step of ``rule`` on
        ``loss``; undone, so ``means`` hold for every call."""
        parameters = self.step.parameters
        before = [p.detach().clone() for p in parameters]
        optimizer_state = copy.deepcopy(self.step.optimizer.state_dict())
        gradients = self.step.gradients(loss)
        self.step.apply(gradients)
        if rule == "sgd":
            adam_norm = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(parameters, before)))
            grad_norm = torch.sqrt(sum((g**2).sum() for g in gradients if g is not None))
            with torch.no_grad():
                for p, b, g in zip(parameters, before, gradients):
                    p.copy_(b if g is None else b - g * adam_norm / grad_norm)
        moved = [self.means(s) - m for s, m in zip(states, means)]
        with torch.no_grad():
            for p, b in zip(parameters, before):
                p.copy_(b)
        self.step.optimizer.load_state_dict(optimizer_state)
        return moved


def near_goal_states(
    experiment: Experiment, group: str, goal: slice, seed: int
) -> tuple[TensorDictBase, torch.Tensor, torch.Tensor]:
    """The deterministic evaluation episodes (the run's test envs, reset from ``seed``): their ``[episodes, steps]``
    observations, each agent's direction to its goal, and the mask of the agents alone at 0.2-0.4 from their goals
    in each env's first episode."""
    env = experiment.test_env
    env.set_seed(seed)
    torch.manual_seed(seed)
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        rollout = env.rollout(experiment.max_steps, policy=experiment.policy, break_when_any_done=False)
    _, steps = first_episodes(rollout)
    observation = rollout[group, "observation"]
    to_goal = -observation[..., goal]
    distance = to_goal.norm(dim=-1)
    alone = (LIDAR_RANGE - observation[..., LIDAR_FEATURES]).min(dim=-1).values > ALONE
    band = steps.unsqueeze(-1) & alone & (distance >= NEAR_GOAL[0]) & (distance < NEAR_GOAL[1])
    return rollout.select((group, "observation")), to_goal, band


def probe(run: Path, group: str, goal: slice | None, seed: int) -> list[dict[str, str]]:
    """The module docstring's rows for ``run``'s last checkpoint, one per step rule."""
    experiment = reload_experiment_from_file(str(latest_checkpoint(run)))
    probe = StepProbe(experiment, group)
    near = near_goal_states(experiment, group, goal, seed) if goal is not None else None
    windows = probe.windows
    states = [w.select(*probe.source.actor.in_keys) for w in windows]
    if near is not None:
        states.append(near[0])
        _, to_goal, band = near
    means = [probe.means(s) for s in states]
    ascents = [probe.loss(w)[1] for w in windows]
    rows = []
    for rule in ("adam", "sgd"):
        own, others, inward, size = [], [], [], []
        for index, window in enumerate(windows):
            loss = probe.loss(window)[0]
            moved = probe.moved(loss, rule, states, means)
            own.append(flat_cosine(moved[index], ascents[index]))
            others.append(
                flat_cosine(
                    torch.cat([moved[j].flatten() for j in range(len(windows)) if j != index]),
                    torch.cat([ascents[j].flatten() for j in range(len(windows)) if j != index]),
                )
            )
            if near is not None:
                inward.append(torch.nn.functional.cosine_similarity(moved[-1], to_goal, dim=-1)[band].mean().item())
                size.append(moved[-1].norm(dim=-1)[band].mean().item())
        mean_loss = sum(probe.loss(w)[0] for w in windows) / len(windows)
        moved = probe.moved(mean_loss, rule, states, means)
        on_all = flat_cosine(torch.cat([m.flatten() for m in moved[: len(windows)]]), torch.cat(ascents).flatten())
        row = {
            "run": run.name,
            "rule": rule,
            "cos on its window": f"{statistics.mean(own):.3f} ± {statistics.stdev(own):.3f}",
            "cos on the others": f"{statistics.mean(others):.3f} ± {statistics.stdev(others):.3f}",
            "mean step: cos on all": f"{on_all:.3f}",
        }
        if near is not None:
            row["cos(Δμ, goal) at 0.2-0.4"] = f"{statistics.mean(inward):.3f} ± {statistics.stdev(inward):.3f}"
            mean_inward = torch.nn.functional.cosine_similarity(moved[-1], to_goal, dim=-1)[band].mean().item()
            row["mean step: cos(Δμ, goal)"] = f"{mean_inward:.3f}"
            row["|Δμ| at 0.2-0.4"] = f"{statistics.mean(size):.2e}"
            row["|μ| there"] = f"{means[-1].norm(dim=-1)[band].mean().item():.3f}"
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="BenchMARL SHAC++ run folders, each with a checkpoint")
    parser.add_argument("--goal", type=feature_slice, default=None, help="observation slice: position - goal")
    parser.add_argument("--group", default="agents")
    parser.add_argument("--seed", type=int, default=0, help="the evaluation envs' seed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [row for run in args.runs for row in probe(run, args.group, args.goal, args.seed)]
    print("| " + " | ".join(rows[0]) + " |")
    print("|---|---|" + "---:|" * (len(rows[0]) - 2))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
