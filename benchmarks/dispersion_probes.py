"""Where do SHAC+'s and SHAC++'s actor gradients point on dispersion (and navigation), and why?

Dispersion's reward is sparse (an agent earns a food's reward the step it first touches it) and has no gradient, so
SHAC+ and SHAC++ steer the agents with what their learned reward model and critic say. This script trains one of them
through BenchMARL (the command line's overrides, e.g. ``algorithm=shacp task.n_agents=1``) and, every ``--every``
windows, on the window just collected, measures against the one direction every agent should move, towards its
nearest uneaten food (``--target nearest_food``, dispersion) or its own goal (``--target goal``, BenchMARL's
navigation, whose goal shaping rewards progress towards it):

* ``policy``: the cosine between the policy's mean action :math:`\mu_\theta(o_t)` and the direction to the target;
* ``actor``: the cosine between the descent direction of the actor loss with respect to each action,
  :math:`-\\partial\\mathcal L_\\pi/\\partial a_t`, and the direction to the target, binned by the distance to it,
  with ``boot`` its part through the critic's bootstrap alone (the learned reward replaced by 0) and
  ``reward_part`` the rest, through the rewards;
* ``policy_vs_velocity``, ``policy_vs_outward``, ``policy_norm``: what the policy's mean follows when not the
  target: its cosine with the agent's own velocity and with its position (away from the arena's centre), over all
  agents, and its mean norm; ``actor_vs_outward``, ``boot_vs_outward``, ``reward_part_vs_outward``: which part of
  the actor's descent direction points outward;
* ``critic`` and ``reward``: the same cosine for the critic's and the reward model's response to moving the agent,
  :math:`\\mathrm dV/\\mathrm d\\delta = \\partial V/\\partial p - \\sum_j \\partial V/\\partial(f_j - p)` (own position
  :math:`p`, food offsets :math:`f_j - p`; for a goal, :math:`+\\partial V/\\partial(p - g)`), on the window's
  observations; a model whose gradient points at the target from afar has a cosine near 1 in the far bins;
* ``reward_corr``: the correlation of the reward model's predictions with the window's real rewards (a model
  that has not learned the reward the policy now meets reads near 0);
* ``predicted_rewarded``, ``predicted_on_eaten``, ``predicted_elsewhere`` (dispersion): the reward model's mean
  prediction on the window's rewarded agent transitions, on the unrewarded ones that end on a food eaten before the
  step (a model that has not learned the eaten flag pays them), and on the rest;
* ``rewarded``: the fraction of rewarded transitions in the window and in the reward cache (the stratified cache
  should keep the rare rewarded transitions);
* ``boot_reward_cos``, ``boot_norm``, ``reward_part_norm``: over the whole window, the cosine between the bootstrap's
  and the rewards' parts of the actor's descent direction, and their norms. Where the reward is a potential-based
  shaping :math:`\Phi(o') - \Phi(o)` and the critic has learned :math:`V \approx c - \Phi`, the two cancel
  (cosine near -1, equal norms), which ``algorithm.actor_value_gradient=0`` avoids; ``--target none`` measures only
  these (and the reward model's fit), on the task the overrides name;
* ``grad_norm_first``, ``grad_norm_last``: the mean norm of :math:`\\partial\\mathcal L_\\pi/\\partial a_t` over the
  window's first and last quarter of steps; a chain of state Jacobians that amplifies the gradient backwards in
  time shows as a first far above the last; ``grad_norm_median``, ``grad_norm_max``: over the window's agent-steps
  (a few exploded agent-steps show as a max far above the median);
* ``noflag_*`` (dispersion, SHAC++'s spliced world model): the same gradient with the world model's predicted eaten
  flags cut from it (their outputs detached at every step, so neither the chain nor the reward model and critic
  reach the actions through them): ``noflag_grad_norm_*`` as above, ``noflag_actor_cos_*`` its cosine with the
  direction to the food, ``noflag_vs_full`` its cosine with the whole gradient over the window. A flag is a step
  function of the agent's position that the model can only learn as a steep slope: if the exploded agent-steps go
  through it, the ``noflag`` norms stay ordinary where the whole one explodes;
* ``frames`` and the evaluation return, from BenchMARL's evaluation.

The probe draws nothing from the run's random stream, so a probed run follows the unprobed one exactly; with
``experiment.restore_file=`` it probes a checkpointed run from the checkpoint on (e.g. through a collapse).

Examples (the tables in ``results/dispersion/`` and ``results/navigation_reward_model.md``)::

    python benchmarks/dispersion_probes.py --windows 300 --every 50 algorithm=shacp task.n_agents=1
    python benchmarks/dispersion_probes.py --target goal --windows 120 --every 10 algorithm=shacpp
    python benchmarks/dispersion_probes.py --target none --windows 240 --every 20 algorithm=shac task=vmas/wheel
    python benchmarks/dispersion_probes.py --windows 200 --every 2 <the run's overrides> \\
        experiment.restore_file=<dir>/checkpoints/checkpoint_184320.pt  # --windows counts from the run's start
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import sys
from pathlib import Path

import torch
from benchmarl.experiment.callback import Callback
from benchmarl.hydra_config import load_experiment_from_hydra
from hydra import compose, initialize_config_module
from tensordict import TensorDictBase


#: Distance bins (to the target) of the cosines.
BINS = (0.0, 0.15, 0.3, 0.6, 3.0)
#: Dispersion's observation: own position (2), velocity (2), then per food its offset (2) and eaten flag (1).
FOOD_START, FOOD_FEATURES = 4, 3
#: An agent touches a food within VMAS's agent radius (0.035) plus the paper's food radius (0.05).
ON_FOOD = 0.085
#: Navigation's observation: own position (2), velocity (2), position - goal (2), then the lidar.
GOAL = slice(4, 6)
#: Both tasks' observations start with the agent's own position and velocity.
POSITION, VELOCITY = slice(0, 2), slice(2, 4)


def food_slots(features: torch.Tensor) -> torch.Tensor:
    """Dispersion's per-food features ``[..., n_food, 3]`` (offset, eaten flag) of an observation or of a gradient
    with respect to it."""
    return features[..., FOOD_START:].unflatten(-1, (-1, FOOD_FEATURES))


def nearest_food(observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each agent's offset to its nearest uneaten food ``[..., 2]`` and its distance ``[...]`` (inf if none left)."""
    foods = food_slots(observation)
    offsets, eaten = foods[..., :2], foods[..., 2] > 0.5
    distance = offsets.norm(dim=-1).masked_fill(eaten, math.inf)
    nearest = distance.argmin(-1, keepdim=True)
    offset = offsets.gather(-2, nearest.unsqueeze(-1).expand(*nearest.shape, 2)).squeeze(-2)
    return offset, distance.gather(-1, nearest).squeeze(-1)


def mean_cosine(direction: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean cosine between ``direction`` and ``reference`` where ``mask`` holds and ``direction`` is not 0 (NaN where
    nowhere)."""
    cosine = torch.nn.functional.cosine_similarity(direction, reference, dim=-1)
    mask = mask & (direction.norm(dim=-1) > 0)
    return cosine[mask].mean().item() if mask.any() else math.nan


def binned_cosines(name: str, direction: torch.Tensor, offset: torch.Tensor, distance: torch.Tensor) -> dict:
    """The columns ``<name>_cos_<low>-<high>``: the mean cosine between ``direction`` and ``offset`` in each distance
    bin (NaN where empty or no gradient)."""
    return {
        f"{name}_cos_{low}-{high}": mean_cosine(direction, offset, (distance >= low) & (distance < high))
        for low, high in zip(BINS[:-1], BINS[1:])
    }


def predictions_by_food(window: TensorDictBase, observation_key, predicted: torch.Tensor, reward: torch.Tensor):
    """The mean predicted reward on rewarded agent transitions, on unrewarded ones ending on a food eaten before the
    step, and on the rest (NaN where there is none)."""
    eaten_before = food_slots(window.get(observation_key))[..., 2] > 0.5
    next_foods = food_slots(window.get(("next", *observation_key)))
    on_eaten = ((next_foods[..., :2].norm(dim=-1) < ON_FOOD) & eaten_before).any(-1, keepdim=True)
    rewarded = reward != 0
    groups = {"rewarded": rewarded, "on_eaten": on_eaten & ~rewarded, "elsewhere": ~on_eaten & ~rewarded}
    return {
        f"predicted_{name}": predicted[mask].mean().item() if mask.any() else math.nan for name, mask in groups.items()
    }


def food_displacement(gradient: torch.Tensor) -> torch.Tensor:
    """A gradient with respect to dispersion's observation as one with respect to the agent's displacement."""
    foods = food_slots(gradient)[..., :2].sum(-2)
    return gradient[..., :2] - foods


def own_goal(observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each agent's offset to its goal ``[..., 2]`` and its distance ``[...]`` (navigation)."""
    offset = -observation[..., GOAL]
    return offset, offset.norm(dim=-1)


def goal_displacement(gradient: torch.Tensor) -> torch.Tensor:
    """A gradient with respect to navigation's observation as one with respect to the agent's displacement."""
    return gradient[..., :2] + gradient[..., GOAL]


#: ``--target``: the direction to measure against, the displacement gradient's form, and the task (``none``: no
#: direction, the overrides' task).
TARGETS = {
    "nearest_food": (nearest_food, food_displacement, "vmas/dispersion_paper"),
    "goal": (own_goal, goal_displacement, "vmas/navigation"),
    "none": (None, None, None),
}


def displacement_gradient(model, td: TensorDictBase, observation_key, out_key, displacement) -> torch.Tensor:
    """:math:`\\mathrm d(\\sum \\text{out})/\\mathrm d\\delta` for a displacement δ of each agent, ``[..., n, 2]``."""
    td = td.clone(False)
    observation = td.get(observation_key).detach().requires_grad_(True)
    td.set(observation_key, observation)
    out = model(td).get(out_key)
    (grad,) = torch.autograd.grad(out.sum(), observation)
    return displacement(grad)


class DispersionProbe(Callback):
    """Measures the gradients above on every ``every``-th collected window (before the actor's step on it)."""

    def __init__(self, every: int, out: Path, target: str = "nearest_food") -> None:
        super().__init__()
        self.every, self.out = every, out
        self.target, self.displacement, _ = TARGETS[target]
        self.window = 0
        self.rows: list[dict] = []
        self.last_eval = math.nan

    def on_setup(self) -> None:
        # The actions the simulator consumes, step by step (SHAC+: the window holds a stack of them).
        self.step_actions: list[torch.Tensor] = []
        self.experiment.policy.register_forward_hook(
            lambda module, args, out: self.step_actions.append(out.get(("agents", "action")))
        )

    def on_evaluation_end(self, rollouts) -> None:
        self.last_eval = torch.stack([r["next", "agents", "reward"].sum(0).mean() for r in rollouts]).mean().item()

    def on_batch_collected(self, batch: TensorDictBase) -> None:
        self.window += 1
        if self.window % self.every:
            return
        # The probe draws no random number of the run's stream, so a probed run (or restore) follows the unprobed one.
        with torch.random.fork_rng(devices=[]):
            self.measure(batch)

    def measure(self, batch: TensorDictBase) -> None:
        group = "agents"
        update = self.experiment.algorithm.groups[group]  # the group's actor loss, critic, source and models
        keys = dict(observation=(group, "observation"), action=(group, "action"))
        per_step = update.source.simulator_graph
        if per_step:
            # The window's action entry is a stack of the actions the simulator consumed, downstream of them.
            window, action = batch, self.step_actions[-batch.shape[1] :]
        else:
            window = update.source.differentiable_window(batch.detach())
            action = window.get(keys["action"])
        self.step_actions = []
        row = {"window": self.window, "frames": self.experiment.total_frames, "eval_return": self.last_eval}
        full, boot = (
            step_gradient(update.actor_loss, window, action, per_step, zero_reward=zeroed) for zeroed in (False, True)
        )
        detached = window.detach()
        if self.target is not None:
            row.update(self.target_cosines(update, window, detached, full, boot, keys["observation"]))
        world_model = update.actor_loss.world_model
        if self.target is nearest_food and getattr(world_model, "follows_resets", False):  # the spliced model
            row.update(self.flag_cut(update, window, action, per_step, full, keys["observation"]))
        boot_descent, reward_descent = -boot.flatten(), (boot - full).flatten()
        row["boot_reward_cos"] = torch.nn.functional.cosine_similarity(boot_descent, reward_descent, 0).item()
        row["boot_norm"], row["reward_part_norm"] = boot_descent.norm().item(), reward_descent.norm().item()
        row.update(gradient_norms(full, "grad_norm"))
        reward = detached.get(("next", group, "reward"))
        if update.source.reward_model is not None:
            predicted_reward = update.actor_loss.tensor_keys.predicted_reward
            predicted = update.source.reward_model(detached.select(*update.source.reward_model.in_keys))
            predicted = predicted.get(predicted_reward)
            row["reward_corr"] = torch.corrcoef(torch.stack([predicted.flatten(), reward.flatten()]))[0, 1].item()
            if self.target is nearest_food:
                row.update(predictions_by_food(detached, keys["observation"], predicted, reward))
        row["rewarded_window"] = (reward.sum((-2, -1)) > 0).float().mean().item()
        for model in update.models:
            if model.name == "reward" and len(model.cache):
                stored = model.cache.storage[:]  # the written slots
                row["rewarded_cache"] = (stored.get(("next", group, "reward")).sum((-2, -1)) > 0).float().mean().item()
        self.rows.append(row)
        print(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
        with open(self.out, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list({k: None for r in self.rows for k in r}))
            writer.writeheader()
            writer.writerows(self.rows)

    def flag_cut(self, update, window, action, per_step: bool, full: torch.Tensor, observation_key) -> dict[str, float]:
        """The ``noflag_*`` columns: the actor's action gradient without the paths through the predicted eaten flags."""
        window_module = update.actor_loss.world_model.module  # the spliced window: its detached features, swapped
        features, detached = window.get(observation_key).shape[-1], window_module.detached_features
        window_module.detached_features = tuple(range(FOOD_START + FOOD_FEATURES - 1, features, FOOD_FEATURES))
        try:
            cut = step_gradient(update.actor_loss, window, action, per_step, zero_reward=False)
        finally:
            window_module.detached_features = detached
        row = gradient_norms(cut, "noflag_grad_norm")
        row.update(binned_cosines("noflag_actor", -cut, *nearest_food(window.get(observation_key).detach())))
        row["noflag_vs_full"] = torch.nn.functional.cosine_similarity(cut.flatten(), full.flatten(), 0).item()
        return row

    def target_cosines(
        self, update, window, detached, full: torch.Tensor, boot: torch.Tensor, observation_key: tuple[str, str]
    ) -> dict[str, float]:
        """The binned cosines with the direction to the target: of the policy's mean, of the actor's descent direction
        and its parts, and of the critic's and reward model's displacement gradients."""
        row = {}
        observation = window.get(observation_key).detach()
        offset, distance = self.target(observation)
        loc = window.get((observation_key[0], "loc")).detach()
        directions = (("policy", loc), ("actor", -full), ("boot", -boot), ("reward_part", boot - full))
        for name, direction in directions:  # the mean; descent directions
            row.update(binned_cosines(name, direction, offset, distance))
        velocity, position = observation[..., VELOCITY], observation[..., POSITION]
        # The policy's mean against the agent's velocity, then every direction against its position (outward).
        references = [("policy", loc, "velocity", velocity)]
        references += [(name, direction, "outward", position) for name, direction in directions]
        for name, direction, reference, along in references:
            row[f"{name}_vs_{reference}"] = mean_cosine(direction, along, along.norm(dim=-1) > 0)
        row["policy_norm"] = loc.norm(dim=-1).mean().item()
        value_loss = update.value_loss
        models = [("critic", value_loss.value_network, value_loss.tensor_keys.value, detached.get("next"))]
        if update.source.reward_model is not None:
            predicted_reward = update.actor_loss.tensor_keys.predicted_reward
            models.append(("reward", update.source.reward_model, predicted_reward, detached))
        next_offset, next_distance = self.target(detached.get(("next", *observation_key)))
        for name, model, out_key, td in models:
            target_offset, target_distance = (next_offset, next_distance) if name == "critic" else (offset, distance)
            with torch.enable_grad():
                grad = displacement_gradient(
                    model, td.select(*model.in_keys), observation_key, out_key, self.displacement
                )
            row.update(binned_cosines(name, grad, target_offset, target_distance))
        return row


def gradient_norms(gradient: torch.Tensor, name: str) -> dict[str, float]:
    """``[B, T, n, d]`` action gradients' norms: the mean over the window's first and last quarter of steps (a chain
    of state Jacobians that amplifies shows as the first far above the last) and the median and largest agent-step's
    (a few exploded agent-steps show as a largest far above the median)."""
    step_norms = gradient.flatten(2).norm(dim=-1).mean(0)  # [T]
    quarter = max(1, step_norms.numel() // 4)
    agent_step_norms = gradient.norm(dim=-1).flatten()
    return {
        f"{name}_first": step_norms[:quarter].mean().item(), f"{name}_last": step_norms[-quarter:].mean().item(),
        f"{name}_median": agent_step_norms.median().item(), f"{name}_max": agent_step_norms.max().item(),
    }  # fmt: skip


def step_gradient(actor_loss, window, action, per_step: bool, zero_reward: bool) -> torch.Tensor:
    """:math:`\partial\mathcal L_\pi/\partial a`, ``[B, T, n, d]``; ``action`` is the window's action entry or, with
    ``per_step``, the list of the per-step actions the simulator consumed."""
    with zeroed_reward(actor_loss) if zero_reward else contextlib.nullcontext():
        loss = actor_loss(window)["loss_actor"]
    inputs = list(action) if per_step else [action]
    grads = torch.autograd.grad(loss, inputs, retain_graph=True, allow_unused=True)
    grads = [torch.zeros_like(a) if g is None else g for a, g in zip(inputs, grads)]
    return torch.stack(grads, dim=1) if per_step else grads[0]


@contextlib.contextmanager
def rewards_replaced(actor_loss, rewards):
    """The actor loss paid ``rewards(td)`` instead of its rewards."""
    actor_loss._rewards = rewards
    try:
        yield
    finally:
        del actor_loss._rewards


def zeroed_reward(actor_loss):
    """The actor loss with every reward replaced by 0: its gradient is the bootstrap's alone."""
    own = actor_loss._rewards
    return rewards_replaced(actor_loss, lambda td: torch.zeros_like(own(td)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=300)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("dispersion_probes.csv"))
    parser.add_argument("--target", choices=list(TARGETS), default="nearest_food", help="the direction to measure")
    parser.add_argument("overrides", nargs="*", help="BenchMARL overrides, e.g. algorithm=shacp task.n_agents=1")
    args = parser.parse_args()
    task = TARGETS[args.target][2]
    overrides = [
        *([f"task={task}"] if task else []), "experiment=shacpp_cpu", f"experiment.max_n_iters={args.windows}",
        "experiment.max_n_frames=null", "experiment.loggers=[csv]", *args.overrides,
    ]  # fmt: skip
    with initialize_config_module(config_module="benchmarl.conf", version_base=None):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    task_name = cfg.hydra.runtime.choices.task
    del cfg.hydra
    probe = DispersionProbe(args.every, args.out, args.target)
    experiment = load_experiment_from_hydra(cfg, task_name=task_name, callbacks=[probe])
    experiment.run()


if __name__ == "__main__":
    sys.exit(main())
