r"""Does the actor's gradient tell an agent pressing transport's package away from its goal to stop, and does the
actor's update follow it there?

The SHAC family's agents dip on transport n=3 by pressing the package's goal face (``results/transport_contacts.md``):
their policy mean drives straight into it (cosine 0.91-0.97 with :math:`-u`, :math:`u` the unit vector from the package
to its goal), whichever potential they are paid. This probe trains a run through BenchMARL (the command line's
overrides) and, every ``--every`` collected windows, classifies the window's agent-steps that touch the package by the
push they give (``transport_contacts.contact_faces``: towards the goal, :math:`-n\cdot u > 1/2`; away, below
:math:`-1/2`) and measures at the agent-steps pushing it away:

* ``grad_into_face``: the median cosine of the actor's descent direction with respect to each action,
  :math:`-\partial\mathcal L_\pi/\partial a_t`, with :math:`-u` (above 0: the gradient says press harder; below 0:
  back off), and ``grad_along_face`` its median :math:`|\cos|` with :math:`u^\perp`; ``towards_grad_to_goal``, at the
  contacts pushing towards the goal, the descent direction's median cosine with :math:`u`;
* ``grad_norm_ratio``: the median norm of :math:`\partial\mathcal L_\pi/\partial a_t` there over its median over all
  the window's agent-steps (how loud these agent-steps are in the actor's gradient);
* ``mean_into_face``: the median cosine of the policy mean :math:`\mu_\theta(o_t)` with :math:`-u`, before the update;
* ``step_into_face``, ``step_backs_off``: for the change of the policy mean at the same observations over the
  algorithm's whole update on this batch (its actor steps, replayed ones included),
  :math:`\delta\mu = \mu_{\theta'}(o_t) - \mu_\theta(o_t)`, the median cosine with :math:`-u` and the share of those
  agent-steps where :math:`\delta\mu\cdot u > 0` (the update moves the mean out of the face);
* ``step_follows_grad``: the median cosine of :math:`\delta\mu` with the descent direction there, and
  ``step_follows_grad_all`` over all the window's agent-steps; ``step_norm_ratio``: the median
  :math:`\lVert\delta\mu\rVert` there over its median over all agent-steps.

Where the windows carry the simulator's graph (SHAC+, SHAC) on ``task=vmas/transport_differentiable`` with the
approach potential paid (``+task.approach_reward=true``), the exact gradient of the window's shaped return, through
VMAS's dynamics and the env's own reward, is split into its two parts, VMAS's task reward and the potential's
:math:`\alpha(1 - \mathrm{on\_goal})(\Phi_{t+1} - \Phi_t)` (``DifferentiableTransport``'s potential recomputed
from the observations, which hold every agent's and the package's position): ``exact_into_face``,
``task_into_face``, ``potential_into_face`` (their descent directions' median cosines with :math:`-u` there) and
``potential_task_norm_ratio`` (the median ratio of the two parts' norms there); ``potential_value_error`` is the
largest gap between the recomputed potential's reward and the env's (its reward less the info's ``task_reward``).

Where the window is re-attached through SHAC++'s spliced world model, the learner's descent direction is split
into the reward model's direct part, :math:`-\partial\hat r(o_t, a_t)/\partial a_t` (the gradient with every feature
of the world model's predictions detached), and the rest, through the world model's Jacobians:
``direct_into_face``, ``world_into_face`` and ``world_direct_norm_ratio`` (their norms' median ratio there).

For SHAC++ the spliced world model's one-step transition is compared with VMAS's at the same transitions, the state
rebuilt from the observations (which hold every agent's position and velocity and the package's and its goal's;
``rebuilt_share``: the share of them where VMAS's next observation so rebuilt matches the window's to 1e-4), at up to
256 agent-steps pushing the package away and 256 not touching it:

* ``jacobian_cos_{away,free}``, ``jacobian_ratio_{away,free}``: the median cosine and norm ratio (model over VMAS) of
  the Jacobians of an agent's next observation with respect to its own action, :math:`\partial o'_i/\partial a_i`.
  In VMAS an action moves its agent the same whether it touches the package or not: the contact's force is computed
  from the positions, so it acts through the next step's state;
* ``press_*``: where it acts, the response of the pushing agent's next velocity and the package's next velocity to
  moving that agent along :math:`-u`, deeper into the face (the observations rebuilt from the moved state):
  ``press_cos_away`` and ``press_ratio_away`` (model against VMAS, both velocities), and the package's and the agent's
  response norms, ``press_package_{exact,model}`` and ``press_agent_{exact,model}``. A model that has not learned the
  contact moves neither: its chain then carries an action into the face as if into free space.

``likelihood_into_face``: the likelihood-ratio estimate of the same gradient (``SHACActorLoss``'s
``likelihood_ratio_loss`` at weight 1, whatever the run's weight; on the window as collected, so on-policy), with
respect to the policy mean, :math:`(a_t - \mu_t) A_t / \sigma^2` per agent-step from the window's real rewards and
the critic's advantage, aggregated over the agent-steps pushing the package away as
:math:`\sum d_t \cdot (-u_t) / \sum \lVert d_t \rVert` (one sample's direction is noise; the sum is the
estimate): above 0 it says press harder, below 0 back off, as the real returns that followed those pushes say.

With the gradient saying *back off* at those agent-steps and the update's :math:`\delta\mu` not following it there
(``step_follows_grad`` far below ``step_follows_grad_all``, or ``step_norm_ratio`` small), the policy presses the face
because its update does not reach those states, not because its gradient asks it to.

The probe draws nothing from the run's random stream, so a probed run follows the unprobed one. ``--summarise``
prints probe CSVs' medians over blocks of frames (the evaluation interval). Example (the tables in
``results/transport_goal_face/``)::

    python benchmarks/transport_goal_face.py --every 3 --out shacpp.csv algorithm=shacpp <the line's overrides>
    python benchmarks/transport_goal_face.py --summarise shacpp.csv shacp.csv
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import torch
import vmas
from benchmarl.experiment.callback import Callback
from tensordict import TensorDict, TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type
from vmas.simulator.environment import environment as vmas_environment

sys.path.insert(0, str(Path(__file__).parent))
from benchmarl_experiment import compose_experiment  # noqa: E402
from dispersion_probes import rewards_replaced, step_gradient  # noqa: E402
from transport_contacts import PACKAGE_FROM_AGENT, PACKAGE_FROM_GOAL, observed_contacts  # noqa: E402

from torchrl_shacpp.benchmarl.callbacks import EvaluationInfo  # noqa: E402
from torchrl_shacpp.envs import DifferentiableTransport  # noqa: E402

#: VMAS transport's observation ends with the package's on-goal flag; its first four features are the agent's position
#: and velocity, and the package's velocity follows its two offsets.
ON_GOAL = 10
POSITION, VELOCITY, PACKAGE_VELOCITY = slice(0, 2), slice(2, 4), slice(8, 10)
#: The Jacobian comparison's columns (NaN in a window without a contact pushing the package away).
JACOBIAN_COLUMNS = (
    "jacobian_cos_away", "jacobian_ratio_away", "jacobian_cos_free", "jacobian_ratio_free", "press_cos_away",
    "press_ratio_away", "press_package_exact", "press_package_model", "press_agent_exact", "press_agent_model",
    "rebuilt_share",
)  # fmt: skip
#: How many agent-steps of each kind the Jacobians are compared at.
JACOBIAN_SAMPLES = 256


def own_action_jacobians(next_observations: list[torch.Tensor], actions: list[torch.Tensor]) -> torch.Tensor:
    r"""``[N, n, F, d]``: :math:`\partial o'_{i,f}/\partial a_i` for each of the ``n`` agents' next observations
    ``[N, F]`` and actions ``[N, d]`` (one backward pass per agent and feature)."""
    blocks = []
    for next_observation, action in zip(next_observations, actions):
        rows = []
        for feature in range(next_observation.shape[-1]):
            output = next_observation[:, feature].sum()
            (row,) = torch.autograd.grad(output, action, retain_graph=True, allow_unused=True)
            rows.append(torch.zeros_like(action) if row is None else row)
        blocks.append(torch.stack(rows, -2))
    return torch.stack(blocks, 1)


@contextlib.contextmanager
def vmas_stream_kept() -> Iterator[None]:
    """VMAS draws every env's resets from one stream shared by all its envs (``Environment.vmas_random_state``), which
    making, seeding and stepping another env moves: this puts it back afterwards, so that the training env's resets,
    and the probed run, stay as they were."""
    stream = list(vmas_environment.Environment.vmas_random_state)
    try:
        yield
    finally:
        vmas_environment.Environment.vmas_random_state[:] = stream


def vmas_transitions(
    task_config: dict, transition, observation: torch.Tensor, action: torch.Tensor, pressed: torch.Tensor,
    into: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """VMAS and the transition model at the states that the transitions' observations ``[N, n, F]`` describe (every
    agent's position and velocity, the package's and its goal's), stepped with ``action`` ``[N, n, d]``: VMAS's next
    observations (``next``), both own-action Jacobians ``[N, n, F, d]`` (``exact``, ``model``), and both responses of
    agent ``pressed[k]``'s next velocity and the package's next velocity (``[N, 4]``) to moving that agent along
    ``into[k]`` (``exact_press``, ``model_press``), the observations rebuilt by VMAS from the moved state."""
    env = vmas.make_env(
        DifferentiableTransport(), num_envs=len(observation), continuous_actions=True, grad_enabled=True, seed=0,
        **task_config,
    )  # fmt: skip
    scenario = env.scenario
    package = scenario.packages[0]
    package_position, goal_position = package_and_goal(observation)
    package.set_pos(package_position, batch_index=None)
    package.set_vel(observation[:, 0, PACKAGE_VELOCITY], batch_index=None)
    package.goal.set_pos(goal_position, batch_index=None)
    shift = torch.zeros(len(observation), 1, requires_grad=True)
    rows = torch.arange(len(observation))
    for index, agent in enumerate(scenario.world.agents):
        moved = (pressed == index).unsqueeze(-1) * shift * into
        agent.set_pos(observation[:, index, POSITION] + moved, batch_index=None)
        agent.set_vel(observation[:, index, VELOCITY], batch_index=None)
    rebuilt = torch.stack([scenario.observation(agent) for agent in scenario.world.agents], 1)
    actions = [action[:, index].clone().requires_grad_(True) for index in range(action.shape[1])]
    next_observation = torch.stack(env.step(actions)[0], 1)
    predicted = transition(rebuilt, torch.stack(actions, 1))
    result = {"next": next_observation.detach()}
    for name, output in (("exact", next_observation), ("model", predicted)):
        result[name] = own_action_jacobians(list(output.unbind(1)), actions)
        velocities = [*range(VELOCITY.start, VELOCITY.stop), *range(PACKAGE_VELOCITY.start, PACKAGE_VELOCITY.stop)]
        responses = output[rows, pressed][:, velocities]
        gradients = [torch.autograd.grad(part.sum(), shift, retain_graph=True)[0] for part in responses.unbind(1)]
        result[f"{name}_press"] = torch.cat(gradients, dim=1)
    return result


def jacobian_columns(transitions: dict[str, torch.Tensor], agent: torch.Tensor, away: torch.Tensor) -> dict[str, float]:
    """The ``jacobian_*`` and ``press_*`` columns from :func:`vmas_transitions`' output at agent-steps of agents
    ``agent`` ``[M]``, ``away`` marking those that push the package away (the rest touch nothing)."""
    rows = torch.arange(len(agent))
    model, exact = transitions["model"][rows, agent].flatten(1), transitions["exact"][rows, agent].flatten(1)
    similarity, ratio = cosine(model, exact), model.norm(dim=-1) / exact.norm(dim=-1).clamp_min(1e-30)
    columns = {}
    for name, mask in (("away", away), ("free", ~away)):
        columns[f"jacobian_cos_{name}"] = median(similarity[mask])
        columns[f"jacobian_ratio_{name}"] = median(ratio[mask])
    exact_press, model_press = transitions["exact_press"][away], transitions["model_press"][away]
    columns["press_cos_away"] = median(cosine(model_press, exact_press))
    columns["press_ratio_away"] = median(model_press.norm(dim=-1) / exact_press.norm(dim=-1).clamp_min(1e-30))
    # Along the push (into the face): how fast the package is pushed away, and the agent pushed back, per unit moved.
    columns["press_package_exact"] = median(exact_press[:, 2:4].norm(dim=-1))
    columns["press_package_model"] = median(model_press[:, 2:4].norm(dim=-1))
    columns["press_agent_exact"] = median(exact_press[:, 0:2].norm(dim=-1))
    columns["press_agent_model"] = median(model_press[:, 0:2].norm(dim=-1))
    return columns


def unit(vector: torch.Tensor) -> torch.Tensor:
    """``vector / |vector|`` along the last dimension (0 for a zero vector)."""
    return vector / vector.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The cosine of ``a`` and ``b`` along the last dimension."""
    return (unit(a) * unit(b)).sum(-1)


def median(values: torch.Tensor) -> float:
    """The median of ``values``, NaN if there are none."""
    return values.median().item() if values.numel() else math.nan


def goal_face_columns(
    observation: torch.Tensor,
    descent: torch.Tensor,
    mean_before: torch.Tensor,
    mean_after: torch.Tensor,
    half_side: float,
    agent_radius: float,
    margin: float,
    exact: dict[str, torch.Tensor] | None = None,
    likelihood: torch.Tensor | None = None,
) -> dict[str, float]:
    """The columns of the module's docstring from agent-steps ``[..., n]``: their transport ``observation``, the
    actor's descent direction on each action and the policy mean before and after the update (``[..., n, 2]``), and
    with ``exact`` (``GoalFaceProbe.exact_parts``) the exact return's parts, with ``likelihood`` the likelihood-ratio
    descent on each mean (``GoalFaceProbe.likelihood_descent``)."""
    to_goal, touching, push, _ = observed_contacts(observation, half_side, agent_radius, margin)
    away, towards = touching & (push < -0.5), touching & (push > 0.5)
    across = torch.stack([-to_goal[..., 1], to_goal[..., 0]], dim=-1)
    step = mean_after - mean_before
    gradient_norm, step_norm = descent.norm(dim=-1), step.norm(dim=-1)
    columns = {
        "away_share": away.float().mean().item(),
        "towards_share": towards.float().mean().item(),
        "grad_into_face": median(cosine(descent, -to_goal)[away]),
        "grad_along_face": median(cosine(descent, across)[away].abs()),
        "towards_grad_to_goal": median(cosine(descent, to_goal)[towards]),
        "grad_norm_ratio": median(gradient_norm[away]) / gradient_norm.median().clamp_min(1e-30).item(),
        "mean_into_face": median(cosine(mean_before, -to_goal)[away]),
        "step_into_face": median(cosine(step, -to_goal)[away]),
        "step_backs_off": ((step * to_goal).sum(-1)[away] > 0).float().mean().item() if away.any() else math.nan,
        "step_follows_grad": median(cosine(step, descent)[away]),
        "step_follows_grad_all": median(cosine(step, descent)),
        "step_norm_ratio": median(step_norm[away]) / step_norm.median().clamp_min(1e-30).item(),
    }
    if likelihood is not None:
        along = (likelihood * -to_goal).sum(-1)[away].sum() / likelihood.norm(dim=-1)[away].sum().clamp_min(1e-30)
        columns["likelihood_into_face"] = along.item() if away.any() else math.nan
    if exact is not None and "direct" in exact:
        for part in ("direct", "world"):
            columns[f"{part}_into_face"] = median(cosine(exact[part], -to_goal)[away])
        norms = exact["world"].norm(dim=-1) / exact["direct"].norm(dim=-1).clamp_min(1e-30)
        columns["world_direct_norm_ratio"] = median(norms[away])
    elif exact is not None:
        for part in ("exact", "task", "potential"):
            columns[f"{part}_into_face"] = median(cosine(exact[part], -to_goal)[away])
        norms = exact["potential"].norm(dim=-1) / exact["task"].norm(dim=-1).clamp_min(1e-30)
        columns["potential_task_norm_ratio"] = median(norms[away])
        columns["potential_value_error"] = exact["value_error"].item()
    return columns


def package_and_goal(observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The package's and its goal's positions ``[..., 2]`` from every agent's transport observation ``[..., n, F]``
    (agent 0's position and its two offsets)."""
    package = observation[..., 0, POSITION] + observation[..., 0, PACKAGE_FROM_AGENT]
    return package, package - observation[..., 0, PACKAGE_FROM_GOAL]


def potential_reward(scenario, observation: torch.Tensor, next_observation: torch.Tensor) -> torch.Tensor:
    r"""The approach potential's part of ``DifferentiableTransport``'s paid reward on each transition,
    :math:`\alpha(1 - \mathrm{on\_goal}_{t+1})(\Phi(o_{t+1}) - \Phi(o_t))`, ``[..., n, 1]`` (every agent is paid
    the same), from the transitions' observations ``[..., n, 11]`` by the scenario's own potential (differentiable
    where they are)."""

    def potential(obs: torch.Tensor) -> torch.Tensor:
        flat = obs.flatten(0, -3)  # [N, n, 11]
        agents = flat[..., POSITION]
        package, goal = package_and_goal(flat)
        # What the scenario's potential reads of its package: its position and its goal's.
        goal_landmark = SimpleNamespace(state=SimpleNamespace(pos=goal))
        landmark = SimpleNamespace(state=SimpleNamespace(pos=package), goal=goal_landmark)
        return scenario._approach_potential(landmark, list(agents.unbind(1))).reshape(obs.shape[:-2])

    off_goal = 1 - next_observation[..., 0, ON_GOAL]
    paid = scenario.approach_coef * off_goal * (potential(next_observation) - potential(observation))
    return paid[..., None, None].expand(*observation.shape[:-1], 1)


class GoalFaceProbe(Callback):
    """Measures the columns on every ``every``-th collected window: the gradient before the algorithm's update on it
    (``on_batch_collected`` runs before the algorithm's own hook), the policy's change after it (``on_train_end``)."""

    def __init__(self, every: int, out: Path, group: str = "agents", margin: float = 0.005) -> None:
        super().__init__()
        self.every, self.out, self.group, self.margin = every, out, group, margin
        self.window, self.rows, self.pending = 0, [], None
        self.last_eval = math.nan

    def on_setup(self) -> None:
        # The actions the simulator consumes, step by step (SHAC+: the window holds a stack of them).
        self.step_actions: list[torch.Tensor] = []
        self.experiment.policy.register_forward_hook(
            lambda module, args, out: self.step_actions.append(out.get((self.group, "action")))
        )
        package = self.experiment.test_env.scenario.packages[0]
        self.half_side = 0.5 * min(package.shape.length, package.shape.width)
        self.agent_radius = self.experiment.test_env.scenario.agent_radius

    def on_evaluation_end(self, rollouts) -> None:
        key = ("next", self.group, "info", "task_reward")
        key = key if key in rollouts[0].keys(True) else ("next", self.group, "reward")
        self.last_eval = torch.stack([r[key].sum(0).mean() for r in rollouts]).mean().item()

    def policy_mean(self, observation: torch.Tensor) -> torch.Tensor:
        """The policy's mean at ``observation`` ``[..., n, d]`` (one env-step per leading index)."""
        flat = observation.flatten(0, -3)
        td = TensorDict({self.group: TensorDict({"observation": flat}, flat.shape[:-1])}, flat.shape[:-2])
        policy = self.experiment.algorithm.get_policy_for_loss(self.group)
        with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
            return policy(td).get((self.group, "loc")).reshape(*observation.shape[:-1], -1)

    def on_batch_collected(self, batch: TensorDictBase) -> None:
        self.window += 1
        step_actions, self.step_actions = self.step_actions, []
        if self.window % self.every:
            return
        with torch.random.fork_rng(devices=[]):  # draws nothing from the run's stream
            update = self.experiment.algorithm.groups[self.group]
            if update.source.simulator_graph:
                window, action = batch, step_actions[-batch.shape[1] :]
            else:
                window = update.source.differentiable_window(batch.detach())
                action = window.get((self.group, "action"))
            descent = -step_gradient(update.actor_loss, window, action, update.source.simulator_graph, False)
            observation = batch.get((self.group, "observation")).detach()
            jacobians = None  # a window through the simulator: no model to compare
            if update.source.simulator_graph:
                exact = self.exact_parts(update, batch, action)
            else:
                exact = self.world_parts(update, window, action, descent)
                jacobians = self.transition_jacobians(update, batch.detach())
            likelihood = self.likelihood_descent(update.actor_loss, window)
            self.pending = (
                observation, descent.detach(), self.policy_mean(observation), exact, jacobians, likelihood
            )  # fmt: skip

    @staticmethod
    def likelihood_descent(actor_loss, window: TensorDictBase) -> torch.Tensor:
        r"""The likelihood-ratio term's descent direction on each agent-step's policy mean, at weight 1 and scaled by
        the window's agent-steps: :math:`(a_t - \mu_t) A_t / \sigma^2` (``[..., n, d]``)."""
        loc = window.get(actor_loss.tensor_keys.loc)
        weight, actor_loss.likelihood_ratio_weight = actor_loss.likelihood_ratio_weight, 1.0
        try:
            value = actor_loss.likelihood_ratio_loss(window)
        finally:
            actor_loss.likelihood_ratio_weight = weight
        (gradient,) = torch.autograd.grad(value, loc, retain_graph=True)
        return -gradient.detach() * loc.shape[:-1].numel()

    def transition_jacobians(self, update, batch: TensorDictBase) -> dict[str, float]:
        """The ``jacobian_*`` columns on the window's transitions, the transition model as it is before its update;
        none without a spliced world model or a contact pushing the package away."""
        transition = getattr(getattr(update.actor_loss.world_model, "module", None), "transition", None)
        observation = batch.get((self.group, "observation"))
        to_goal, touching, push, _ = observed_contacts(observation, self.half_side, self.agent_radius, self.margin)
        away = touching & (push < -0.5)
        if transition is None or not away.any():
            return {}
        generator = torch.Generator().manual_seed(self.window)
        picks = [index[torch.randperm(len(index), generator=generator)[:JACOBIAN_SAMPLES]]
                 for index in (away.nonzero(), (~touching).nonzero())]  # fmt: skip
        index = torch.cat(picks)  # [M, 3]: env, step, agent
        steps = observation[index[:, 0], index[:, 1]]
        actions = batch.get((self.group, "action"))[index[:, 0], index[:, 1]]
        into = -to_goal[index[:, 0], index[:, 1], index[:, 2]]
        with torch.enable_grad(), vmas_stream_kept():
            transitions = vmas_transitions(self.experiment.task.config, transition, steps, actions, index[:, 2], into)
        columns = jacobian_columns(transitions, index[:, 2], torch.arange(len(index)) < len(picks[0]))
        gap = (transitions["next"] - batch.get(("next", self.group, "observation"))[index[:, 0], index[:, 1]]).abs()
        columns["rebuilt_share"] = (gap.amax((1, 2)) < 1e-4).float().mean().item()
        return columns

    def world_parts(self, update, window: TensorDictBase, action: torch.Tensor, descent: torch.Tensor) -> dict | None:
        """The learner's descent direction's direct part through the reward model and its part through the spliced
        world model's Jacobians; None without a spliced world model."""
        spliced = getattr(update.actor_loss.world_model, "module", None)
        if not hasattr(spliced, "detached_features"):
            return None
        detached = spliced.detached_features
        spliced.detached_features = tuple(range(window.get((self.group, "observation")).shape[-1]))
        try:
            direct = -step_gradient(update.actor_loss, window, action, False, False).detach()
        finally:
            spliced.detached_features = detached
        return {"direct": direct, "world": descent.detach() - direct}

    def exact_parts(self, update, batch: TensorDictBase, action: list[torch.Tensor]) -> dict[str, torch.Tensor] | None:
        """The descent directions of the window's shaped return through the simulator, by the env's reward, by its
        task part and by its potential part (the actor loss paid each in turn), and the potential's value check; None
        where the env pays no potential."""
        scenario = self.experiment.test_env.scenario
        info_key = ("next", self.group, "info", "task_reward")
        if not getattr(scenario, "approach_reward", False) or info_key not in batch.keys(True):
            return None
        reward = batch.get(("next", self.group, "reward"))
        paid = potential_reward(
            scenario, batch.get((self.group, "observation")), batch.get(("next", self.group, "observation"))
        )
        task = batch.get(info_key).reshape(reward.shape)
        parts = {"exact": reward, "task": reward - paid, "potential": paid}
        descents = {}
        actor_loss = update.actor_loss
        for name, part in parts.items():
            with rewards_replaced(actor_loss, lambda td, part=part: part):
                descents[name] = -step_gradient(actor_loss, batch, action, True, False).detach()
        descents["value_error"] = (paid - (reward - task)).abs().max().detach()
        return descents

    def on_train_end(self, training_td: TensorDictBase, group: str) -> None:
        if self.pending is None or group != self.group:
            return
        observation, descent, mean_before, exact, jacobians, likelihood = self.pending
        self.pending = None
        row = {"window": self.window, "frames": self.experiment.total_frames, "eval_return": self.last_eval}
        row.update(
            goal_face_columns(
                observation, descent, mean_before, self.policy_mean(observation), self.half_side, self.agent_radius,
                self.margin, exact, likelihood,
            )
        )  # fmt: skip
        if jacobians is not None:
            row.update({name: jacobians.get(name, math.nan) for name in JACOBIAN_COLUMNS})
        self.rows.append(row)
        print(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
        with open(self.out, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(row))
            writer.writeheader()
            writer.writerows(self.rows)


#: The columns of ``--summarise``'s table, where a probe's CSV has them.
SUMMARY_COLUMNS = (
    "away_share", "grad_into_face", "mean_into_face", "step_into_face", "step_backs_off", "step_follows_grad",
    "step_follows_grad_all", "likelihood_into_face", "exact_into_face", "task_into_face", "potential_into_face",
    "potential_task_norm_ratio", "direct_into_face", "world_into_face", "world_direct_norm_ratio",
    *JACOBIAN_COLUMNS[:-1],
)  # fmt: skip


def block_medians(rows: list[dict[str, str]], block_frames: int) -> list[dict[str, float]]:
    """A probe's CSV rows grouped into blocks of ``block_frames`` frames (the evaluation interval: block k holds the
    windows after evaluation k), each column's median over the block's windows where it is measured (NaN: no window
    had a contact pushing the package away); ``windows`` counts the block's probed windows and ``return at start`` is
    the evaluation at the block's start."""
    blocks: dict[int, list[dict[str, str]]] = {}
    for row in rows:
        blocks.setdefault((int(row["frames"]) - 1) // block_frames, []).append(row)
    table = []
    for block, members in sorted(blocks.items()):
        summary = {"frames": f"{block * block_frames // 1000}-{(block + 1) * block_frames // 1000}k"}
        summary["return at start"] = float(members[0]["eval_return"])
        summary["windows"] = len(members)
        for column in (column for column in SUMMARY_COLUMNS if column in members[0]):
            values = torch.tensor([float(member[column]) for member in members])
            summary[column] = median(values[~values.isnan()])
        table.append(summary)
    return table


def summarise(paths: list[Path], block_frames: int) -> None:
    """Prints each probe CSV's block medians as a Markdown table."""
    for path in paths:
        with open(path, newline="") as file:
            table = block_medians(list(csv.DictReader(file)), block_frames)
        columns = list(table[0])
        print(f"\n{path}\n\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
        for row in table:
            cells = [cell(column, value) for column, value in row.items()]
            print("| " + " | ".join(cells) + " |")


def cell(column: str, value: float | int | str) -> str:
    """A summary cell: shares of agent-steps in percent (they are small), the press responses (which span four orders
    of magnitude) in two significant digits, the rest to two decimals."""
    if not isinstance(value, float):
        return str(value)
    if column.endswith("_share"):
        return f"{100 * value:.2f}%"
    return f"{value:.2g}" if column.startswith("press_") else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("transport_goal_face.csv"))
    parser.add_argument("--margin", type=float, default=0.005, help="how far beyond touching counts as contact")
    parser.add_argument("--summarise", type=Path, nargs="+", help="print these probe CSVs' medians and stop")
    parser.add_argument("--block", type=int, default=61440, help="--summarise's block, in frames")
    parser.add_argument("overrides", nargs="*", help="BenchMARL overrides, task=vmas/transport... among them")
    args = parser.parse_args()
    if args.summarise:
        return summarise(args.summarise, args.block)
    tasks = [override.removeprefix("task=") for override in args.overrides if override.startswith("task=")]
    if len(tasks) != 1 or "transport" not in tasks[0]:
        raise SystemExit(f"Name a transport task once among the overrides (task=vmas/transport...); got {tasks}.")
    overrides = [override for override in args.overrides if not override.startswith("task=")]
    probe = GoalFaceProbe(args.every, args.out, margin=args.margin)
    # As torchrl_shacpp.benchmarl.run logs it: the evaluations' task return, which learning_comparison.py --info reads.
    compose_experiment(tasks[0], overrides, callbacks=[probe, EvaluationInfo()]).run()


if __name__ == "__main__":
    sys.exit(main())
