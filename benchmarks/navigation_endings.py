r"""How a trained policy's navigation episodes end: each agent's distance to its goal at the last step, the closest it
came, its speed there, and the collisions on the way, from a BenchMARL checkpoint, with the policy's deterministic
action and with its samples.

It tells apart the ways an evaluation return below MAPPO's can come about: agents that stop a little off their goals
(a precision gap), agents that reach their goals and leave them (an overshoot), and agents that never come near (a
deadlock or a detour). Navigation's observation holds ``pos - goal`` at features 4:6, so the distances are read off
the rollout; an agent is on its goal within the goal's radius (VMAS: half the agent's, 0.05; the arrival bonus needs
every agent there), and the episode ends once every agent is within the agent's radius (0.1) of its goal.

A second table follows each run's deterministic episodes by the agent's distance to its goal, for the agents with
no other agent within 0.3 (their lidar reads nothing nearer), where the goal alone should steer: the action's size
and its angle to the goal's direction, the velocity's cosine with it, and the gradients the actor follows there. The
critic's gradient w.r.t. the agent's own position (through both its position and its ``pos - goal`` features): with
navigation's shaping reward :math:`r = d_{t-1} - d_t` the value of a policy that reaches its goal grows with the
distance, so this gradient should point away from the goal, along the radius. And, for SHAC+ and SHAC++, the reward
model's gradient w.r.t. the action, which for the shaping is :math:`dt^2` times the goal's direction (from the
agent's next position), and its error on the episodes' own transitions, :math:`\hat r - r`: a policy that exploits
its reward model goes where the model's error is positive.

The checkpoint comes from a run with ``experiment.checkpoint_at_end=true`` (any algorithm; the run's ``.hydra`` folder
rebuilds its experiment through :func:`benchmarl.hydra_config.reload_experiment_from_file`):

    python benchmarks/navigation_endings.py runs/mappo_s0 runs/shacpp_s0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from benchmarl.experiment import Experiment
from benchmarl.hydra_config import reload_experiment_from_file
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

import torchrl_shacpp.benchmarl  # noqa: F401  (registers the SHAC family's configs)
from torchrl_shacpp.benchmark.resume import checkpoint_frames

POSITION_FEATURES = slice(0, 2)
VELOCITY_FEATURES = slice(2, 4)
GOAL_FEATURES = slice(4, 6)  # pos - goal
LIDAR_FEATURES = slice(6, 18)  # lidar range minus each ray's distance
LIDAR_RANGE = 0.35  # BenchMARL's navigation
ALONE = 0.3  # no other agent nearer than this
DISTANCE_BANDS = ((0.0, 0.1), (0.1, 0.2), (0.2, 0.4), (0.4, 0.7), (0.7, 1.2), (1.2, 9.0))
GOAL_RADIUS = 0.05  # the arrival bonus's radius
DONE_RADIUS = 0.1  # the episode ends once every agent is this close to its goal (VMAS: the agent's radius)
FAR = 0.2  # an agent's diameter


def latest_checkpoint(run: Path) -> Path:
    """The last checkpoint BenchMARL wrote under ``run``."""
    checkpoint = max(run.glob("**/checkpoints/checkpoint_*.pt"), key=checkpoint_frames, default=None)
    if checkpoint is None:
        raise SystemExit(f"{run} holds no checkpoint: train it with experiment.checkpoint_at_end=true.")
    return checkpoint


def first_episodes(rollout: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
    """The step at which each env's first episode ends in a ``[episodes, steps]`` rollout (navigation terminates once
    every agent is within 0.1 of its goal, and the env then starts another episode), and the ``[episodes, steps]`` mask
    of that episode's steps."""
    done = rollout["next", "done"].reshape(*rollout.shape, -1).any(-1).clone()
    done[:, -1] = True
    end = done.float().argmax(dim=1)
    return end, torch.arange(rollout.shape[1]) <= end.unsqueeze(-1)


def endings(rollout: TensorDictBase, group: str = "agents") -> dict[str, float]:
    """The endings of each env's first episode in a ``[episodes, steps]`` navigation rollout, over episodes and
    agents."""
    end, steps = first_episodes(rollout)
    observation = rollout["next", group, "observation"]
    episodes = torch.arange(len(end))
    distance = observation[..., GOAL_FEATURES].norm(dim=-1)  # [episodes, steps, agents]
    start = rollout[group, "observation"][:, 0, :, GOAL_FEATURES].norm(dim=-1)
    final = distance[episodes, end]
    closest = distance.masked_fill(~steps.unsqueeze(-1), torch.inf).min(dim=1).values
    speed = observation[episodes, end][..., VELOCITY_FEATURES].norm(dim=-1)
    on_goal = final < GOAL_RADIUS
    in_episode = steps.unsqueeze(-1).float()
    reward = (rollout["next", group, "reward"].squeeze(-1) * in_episode).sum(dim=1).mean()
    collided = rollout["next", group, "info", "agent_collisions"].squeeze(-1) < 0
    return {
        "return": reward.item(),
        "every agent within 0.1 (episode ended)": (final < DONE_RADIUS).all(dim=-1).float().mean().item(),
        "steps": (end + 1).float().mean().item(),
        "start distance": start.mean().item(),
        "final distance": final.mean().item(),
        "final distance, median": final.median().item(),
        "on goal (0.05) at the end": on_goal.float().mean().item(),
        "within 0.1 at the end": (final < DONE_RADIUS).float().mean().item(),
        "within 0.2 at the end": (final < FAR).float().mean().item(),
        "reached, then left (>0.2)": ((closest < GOAL_RADIUS) & (final >= FAR)).float().mean().item(),
        "never within 0.2": (closest >= FAR).float().mean().item(),
        "final speed": speed.mean().item(),
        "collision steps per agent": (collided.float() * in_episode).sum(dim=1).mean().item(),
    }


def cosine(vectors: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    return (vectors * directions).sum(-1) / (vectors.norm(dim=-1) * directions.norm(dim=-1)).clamp_min(1e-12)


def position_gradient(critic: TensorDictModuleBase, rollout: TensorDictBase, group: str) -> torch.Tensor:
    """``[episodes, steps, agents, 2]``: each agent's value's gradient w.r.t. its own position, which moves its
    ``pos`` and its ``pos - goal`` features alike (a centralised critic: one backward pass per agent)."""
    observation = rollout[group, "observation"].clone().requires_grad_(True)
    values = critic(TensorDict({(group, "observation"): observation}, batch_size=rollout.batch_size))
    values = values[group, "state_value"][..., 0]
    gradient = torch.zeros(*observation.shape[:-1], 2)
    for agent in range(observation.shape[-2]):
        (of_value,) = torch.autograd.grad(values[..., agent].sum(), observation, retain_graph=True)
        own = of_value[..., agent, :]
        gradient[..., agent, :] = own[..., POSITION_FEATURES] + own[..., GOAL_FEATURES]
    return gradient


def reward_action_gradient(
    reward_model: TensorDictModuleBase, rollout: TensorDictBase, group: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[episodes, steps, agents, 2]``: the reward model's partial gradient w.r.t. each agent's action, at the action
    taken (a model that reads ``o'`` too gets the rest of its action gradient through the world model, not here);
    and ``[episodes, steps, agents]``: its prediction's error on the rollout's own transitions, ``r̂ - r``."""
    action = rollout[group, "action"].clone().requires_grad_(True)
    transitions = rollout.select(*reward_model.in_keys).clone()
    transitions.set((group, "action"), action)
    predicted = reward_model(transitions).get(reward_model.out_keys[0])
    gradient = torch.autograd.grad(predicted.sum(), action)[0]
    return gradient, (predicted.detach() - rollout["next", group, "reward"]).squeeze(-1)


def actor_ascent(experiment: Experiment, rollout: TensorDictBase, group: str) -> tuple[torch.Tensor, torch.Tensor]:
    """SHAC++'s actor objective's ascent direction w.r.t. each action of ``rollout`` (its first ``h``-step windows,
    re-attached to the policy as in training), whole and without the bootstrap critic's gradient
    (``value_gradient=0``), each ``[episodes, steps, agents, 2]``: their difference is the critic's part."""
    update = experiment.algorithm.update
    source, loss = update.groups[group].source, update.groups[group].actor_loss
    length = update.window_length
    windows = [rollout[:, begin : begin + length] for begin in range(0, rollout.shape[1] - length + 1, length)]
    ascents, run_value_gradient = [], loss.value_gradient
    for value_gradient in (1.0, 0.0):
        loss.value_gradient = value_gradient
        ascent = []
        for window in windows:
            attached = source.differentiable_window(window)
            action = attached[group, "action"]
            ascent.append(-torch.autograd.grad(loss(attached)["loss_actor"], action)[0])
        ascents.append(torch.cat(ascent, dim=1))
    loss.value_gradient = run_value_gradient
    return ascents[0], ascents[1]


def by_distance(experiment: Experiment, rollout: TensorDictBase, group: str = "agents") -> list[dict[str, float]]:
    """One row per band of the distance to the goal, over the steps of each env's first episode of the deterministic
    ``rollout`` whose agent has no other agent within :data:`ALONE` (see the module's docstring); for SHAC++, over
    its whole windows."""
    update = getattr(experiment.algorithm, "update", None)
    source = update.groups[group].source if update is not None else None
    shacpp = source is not None and not source.simulator_graph
    if shacpp:
        rollout = rollout[:, : rollout.shape[1] // update.window_length * update.window_length]
    _, steps = first_episodes(rollout)
    observation = rollout[group, "observation"]
    to_goal = -observation[..., GOAL_FEATURES]
    distance = to_goal.norm(dim=-1)
    alone = steps.unsqueeze(-1).expand_as(distance)
    if observation.shape[-1] > LIDAR_FEATURES.start:  # without collisions the agents have no lidar
        alone = alone & ((LIDAR_RANGE - observation[..., LIDAR_FEATURES]).min(dim=-1).values > ALONE)
    action = rollout[group, "action"]
    angle = torch.atan2(
        to_goal[..., 0] * action[..., 1] - to_goal[..., 1] * action[..., 0], (to_goal * action).sum(-1)
    ).rad2deg()
    loss = experiment.losses[group]
    critic = loss.critic_network if hasattr(loss, "critic_network") else loss.value_network
    value_gradient = position_gradient(critic, rollout, group)
    reward_model = getattr(source, "reward_model", None)
    reward_gradient, reward_error = (
        reward_action_gradient(reward_model, rollout, group) if reward_model is not None else (None, None)
    )
    ascent = None
    if shacpp:  # its actor's gradient needs no simulator graph: it can be taken on the evaluation's rollout
        ascent, rewards_ascent = actor_ascent(experiment, rollout, group)
        critics_ascent = ascent - rewards_ascent
    rows = []
    for low, high in DISTANCE_BANDS:
        band = alone & (distance >= low) & (distance < high)
        if not band.any():
            continue
        row = {
            "distance": f"{low}-{high}",
            "agent-steps": int(band.sum()),
            "action size": action.norm(dim=-1)[band].mean().item(),
            "action's angle to the goal (abs, deg)": angle[band].abs().mean().item(),
            "cos(velocity, goal)": cosine(observation[..., VELOCITY_FEATURES], to_goal)[band].mean().item(),
            "critic ∂V/∂pos size": value_gradient.norm(dim=-1)[band].mean().item(),
            "cos(∂V/∂pos, goal)": cosine(value_gradient, to_goal)[band].mean().item(),
        }
        if reward_gradient is not None:
            row["cos(∂R/∂a, goal)"] = cosine(reward_gradient, to_goal)[band].mean().item()
            row["reward model's error r̂ - r"] = reward_error[band].mean().item()
            row["its size |r̂ - r|"] = reward_error[band].abs().mean().item()
            row["real reward r"] = rollout["next", group, "reward"].squeeze(-1)[band].mean().item()
        if ascent is not None:
            row["cos(actor's ascent, goal)"] = cosine(ascent, to_goal)[band].mean().item()
            row["its rewards' part"] = cosine(rewards_ascent, to_goal)[band].mean().item()
            row["its critic's part"] = cosine(critics_ascent, to_goal)[band].mean().item()
            row["critic's part size / rewards'"] = (
                critics_ascent.norm(dim=-1)[band].mean() / rewards_ascent.norm(dim=-1)[band].mean()
            ).item()
        rows.append(row)
    return rows


def evaluate(run: Path, seed: int) -> tuple[dict[str, dict[str, float]], list[dict[str, float]]]:
    """The endings of the evaluation episodes (the run's ``experiment.evaluation_episodes`` envs, its test env) of
    ``run``'s last checkpoint, per exploration type, the envs reset from ``seed`` for each; and the deterministic
    episodes by distance to the goal (:func:`by_distance`)."""
    experiment = reload_experiment_from_file(str(latest_checkpoint(run)))
    env, results = experiment.test_env, {}
    for name, exploration in (("deterministic", ExplorationType.DETERMINISTIC), ("sampled", ExplorationType.RANDOM)):
        env.set_seed(seed)
        torch.manual_seed(seed)
        with torch.no_grad(), set_exploration_type(exploration):
            rollout = env.rollout(
                experiment.max_steps, policy=experiment.policy, auto_cast_to_device=True, break_when_any_done=False
            )
        results[name] = endings(rollout)
        if name == "deterministic":
            bands = by_distance(experiment, rollout)
    return results, bands


def markdown(rows: list[dict[str, float | str]]) -> list[str]:
    """A Markdown table, one row per dict, its keys the columns (the first, a label, aligned left)."""
    cells = [[f"{value:.3f}" if isinstance(value, float) else str(value) for value in row.values()] for row in rows]
    return [
        "| " + " | ".join(rows[0]) + " |",
        "|---|" + "---:|" * (len(rows[0]) - 1),
        *("| " + " | ".join(row) + " |" for row in cells),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="BenchMARL run folders, each with a checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="the evaluation envs' seed (the same for every run)")
    args = parser.parse_args()
    columns, bands = {}, {}
    for run in args.runs:
        endings_by_mode, bands[run.name] = evaluate(run, args.seed)
        for mode, values in endings_by_mode.items():
            columns[f"{run.name} ({mode})"] = values
    metrics = next(iter(columns.values()))
    print("\n".join(markdown([{"": metric, **{column: values[metric] for column, values in columns.items()}}
                               for metric in metrics])))
    for name, rows_by_distance in bands.items():
        print(f"\n{name}, deterministic, agents alone, by distance to the goal:\n")
        print("\n".join(markdown(rows_by_distance)))


if __name__ == "__main__":
    main()
