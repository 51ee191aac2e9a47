"""What SHAC, SHAC+ and SHAC++ learn from one collected batch, in one place and in order."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from tensordict import TensorDictBase
from torch.profiler import record_function
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.objectives.utils import TargetNetUpdater

from torchrl_shacpp.checks import check_count
from torchrl_shacpp.data import finite_items
from torchrl_shacpp.objectives import SHACActorLoss, TDLambdaValueLoss
from torchrl_shacpp.objectives.utils import check_window
from torchrl_shacpp.optim import FiniteGradientStep, PolicyMeanStepBound, load_state_keeping_rates
from torchrl_shacpp.trainers.cooldown import CoolDown
from torchrl_shacpp.trainers.learned import LearnedModel
from torchrl_shacpp.trainers.sources import GradientSource


#: What each actor step's info holds, and its name in the logs (``train/<group>/<name>``, a mean over the steps).
ACTOR_STEP_LOGS = {
    "actor_loss": "actor_loss",
    "action_bound_loss": "action_bound_loss",
    "action_mean_loss": "action_mean_loss",
    "likelihood_ratio_loss": "likelihood_ratio_loss",
    "action_mean_weight": "action_mean_weight",
    "action_mean_share": "action_mean_share",
    "grad_norm": "actor_grad_norm",
    "mean_change": "actor_mean_change",
    "step_scale": "actor_step_scale",
}


@dataclass
class GroupUpdate:
    """One agent group's part of a :class:`WindowUpdate`.

    Attributes:
        actor_loss: the SHAC window objective, built with the source's reward and world models.
        actor_step: the actor's guarded Adam step (paper: lr 1e-3, norm clip 1).
        value_loss: the critic's TD(λ) loss; the update writes its targets into every batch.
        source: where the actor's gradient comes from, and the models it learns.
        value_model: the critic trained from its own cache on the cool-down (the authors' SHAC++), or ``None`` when
            the critic trains on each batch elsewhere (BenchMARL's optimiser loop, or the caller's loop).
        target_updater: the critic's target updater, stepped once after each cool-down training of ``value_model``
            (a critic trained elsewhere steps its own).
        dropped_critic_items: the transitions :meth:`WindowUpdate.finite_critic_items` withheld from a critic trained
            elsewhere for their non-finite inputs or targets.
        step_bound: shrinks each actor step whose policy mean moves too far on the step's observations, or ``None``
            (the paper's steps).
        likelihood_ratio_step: the guarded step of PPO's minibatch steps on the actor (its own optimiser, beside the
            pathwise steps'), or ``None``: no such steps (the paper's).
    """

    actor_loss: SHACActorLoss
    actor_step: FiniteGradientStep
    value_loss: TDLambdaValueLoss
    source: GradientSource
    value_model: LearnedModel | None = None
    target_updater: TargetNetUpdater | None = None
    dropped_critic_items: int = 0
    step_bound: PolicyMeanStepBound | None = None
    likelihood_ratio_step: FiniteGradientStep | None = None

    def bounded_step(self, window: TensorDictBase, step: Callable[[], dict[str, float]]) -> dict[str, float]:
        """``step()``, an actor step taken on ``window``, within :attr:`step_bound` when there is one."""
        return step() if self.step_bound is None else self.step_bound(window, step)

    @property
    def models(self) -> list[LearnedModel]:
        """The models trained on the cool-down."""
        return [*self.source.models, *([self.value_model] if self.value_model is not None else [])]


class WindowUpdate:
    r"""Everything the SHAC family learns from one collected batch, in order.

    A batch ``[*B, T]`` (B environments, T steps, collected by the policy; carrying the simulator's autograd graph
    when the source needs it) goes through:

    1. **actor**: the batch is cut into windows of ``window_length`` steps (the last one shorter when
       ``window_length`` does not divide T; ``None`` keeps the batch whole). The source turns each window into the
       one the actor loss differentiates, and the guarded Adam step descends :math:`\mathcal L_\pi` plus the
       action-bound penalty: SHAC++ once per window, in time order; SHAC and SHAC+, whose windows share the batch's
       simulator graph, once per batch on the mean of its windows' objectives (:meth:`train_actors`).
       A group with a ``step_bound`` shrinks each step whose policy mean moves more than its bound on the step's
       observations (:class:`~torchrl_shacpp.optim.PolicyMeanStepBound`), logged as ``train/<group>/actor_mean_change``
       (before shrinking) and ``actor_step_scale``.
    2. **graph cut**: ``cut_graph()``, so that the next batch's gradient never reaches these actions (e.g.
       :meth:`~torchrl_shacpp.collectors.WindowGraphCut.arm`).
    3. **value targets**: TD(λ) over the whole batch (:meth:`TDLambdaValueLoss.value_targets`), written into
       ``batch`` under each value loss's ``value_target`` key, for a critic trained on the batch afterwards.
    4. **caches**: each learned model caches its items of every window (the world model's cache whole windows of its
       own length only), less those holding a non-finite value, which it counts. Before, each model's loss on these
       windows, which it has not trained on, is logged as ``train/<group>/new_data_loss_<model>``: its error where
       the policy goes now (:meth:`LearnedModel.measure`). Their mean since the model's last training, over that
       training's loss, is its surprise, logged as ``train/<group>/surprise_<model>`` at its next training: above 1
       the actor has led the agents where the model is wrong, and a cool-down with ``surprise_steps`` gives that
       training a larger budget.

    Non-finite data (a NaN observation or reward from the simulator, an infinite value target) never reach a
    parameter or a cache: an actor step whose loss or gradient is not finite is skipped, and the caches drop the
    items. Logged: ``train/<group>/skipped_actor_steps``, ``train/<group>/dropped_<model>_items`` (cumulative) and
    ``train/non_finite_envs``, the envs of this batch with a non-finite value.
    5. **cool-down**: after every ``cooldown.every``-th window the learned models train from their caches, and a
       cache-trained critic's target takes one Polyak step.
    6. **likelihood-ratio steps**: a group with a ``likelihood_ratio_step`` then takes ``likelihood_ratio_steps``
       steps of PPO's clipped surrogate on minibatches of the batch's transitions
       (:meth:`SHACActorLoss.likelihood_ratio_items`, drawn without replacement as BenchMARL draws MAPPO's), with their
       own optimiser: MAPPO's update of the actor beside SHAC's, the importance ratio taken against the collecting
       policy (the pathwise steps have moved it since). With ``likelihood_ratio_collections`` :math:`n > 1` the
       minibatches are drawn from the transitions of the last :math:`n` batches (this one included), each batch's
       advantages computed again with the current critic and its log-probabilities those of the policy that
       collected it: PPO's steps on :math:`n` times the transitions while the pathwise steps keep their small
       collections. Logged as ``train/<group>/likelihood_ratio_step_loss`` and ``likelihood_ratio_grad_norm`` (means
       over the steps) and ``skipped_likelihood_ratio_steps``.

    With ``actor_replay_steps`` :math:`k \ge 1`, a group whose windows carry no simulator graph (SHAC++) then takes
    :math:`k` more steps per collected window, each on a window drawn uniformly from the last
    ``actor_replay_windows`` windows (this batch's included), re-attached to the policy as it is then:
    the current policy's gradient at that window's observations and collected actions
    (:func:`~torchrl_shacpp.collectors.attach_policy_graph`), through the current models. More actor steps per
    frame on more states, as PPO's epochs over its batch; the paper takes one step per window. The replayed steps
    start once the group's models have trained: before, they would multiply an untrained model's gradient, and the
    first windows, alone in the replay, would take them all (measured on give_way: the first evaluation fell from
    3.3 to -0.7).

    With ``actor_waits_for_models``, a group whose source learns models (SHAC+, SHAC++) takes no actor step before
    each of them has trained once: until then the reward model is random and the world model untrained. Measured: on
    navigation it delays the policy's collapse by those windows without preventing it
    (``benchmarks/results/first_actor_steps.md``), and dispersion n=1 was not solved sooner; hence off by default.

    Under :mod:`torch.profiler` the parts show as ``shac/actor_steps``, ``shac/value_targets``,
    ``shac/new_data_losses``, ``shac/cache_writes`` and ``shac/cooldown/<model>`` (each minibatch:
    ``shac/<model>/loss``, ``shac/<model>/backward_and_step``); ``benchmarks/shacpp_profile.py`` splits a window by
    them.

    Args:
        groups: each agent group's learners, by group name.

    Keyword Args:
        window_length: the actor's window h (paper: 32); ``None`` makes the whole batch one window.
        cooldown: when the learned models train; required if any group learns a model.
        cut_graph: cuts the collection's autograd graph after the actor steps. Defaults to doing nothing (a
            :class:`~torchrl_shacpp.collectors.WindowCollector` cuts at every window start itself).
        actor_waits_for_models: a group's actor takes its first step once its source's models have trained (the
            paper's actor steps from the first window). Defaults to ``False``.
        actor_replay_steps: more actor steps per collected window, on replayed windows, for groups without a
            simulator graph (paper: 0). Defaults to 0.
        actor_replay_windows: the replayed windows: the last this many, less each batch's shorter last window
            (batches of one shape) and the windows holding a non-finite value. Defaults to 32.
        likelihood_ratio_steps: PPO's minibatch steps per collected batch for the groups with a
            ``likelihood_ratio_step`` (paper: none). Defaults to 0.
        likelihood_ratio_minibatch_size: the transitions in each of them; ``None``: all that they draw from.
        likelihood_ratio_collections: the collected batches they draw from, the last this many. Defaults to 1 (this
            one, as MAPPO).

    Examples:
        >>> update = WindowUpdate({"agents": GroupUpdate(actor_loss, actor_step, value_loss, SimulatorGradient())})
        >>> for window in WindowCollector(env, policy, window_length=32, graph="simulator"):
        ...     logs = update(window)  # actor step; value targets written into the window
        ...     for minibatch in window.detach().reshape(-1).split(512):
        ...         critic_step(value_loss(minibatch)["loss_value"])
    """

    def __init__(
        self,
        groups: Mapping[str, GroupUpdate],
        *,
        window_length: int | None = None,
        cooldown: CoolDown | None = None,
        cut_graph: Callable[[], None] = lambda: None,
        actor_waits_for_models: bool = False,
        actor_replay_steps: int = 0,
        actor_replay_windows: int = 32,
        likelihood_ratio_steps: int = 0,
        likelihood_ratio_minibatch_size: int | None = None,
        likelihood_ratio_collections: int = 1,
    ) -> None:
        if window_length is not None:
            check_count("window_length", window_length, hint="It is a number of steps (paper: 32), or None.")
        if cooldown is None and any(group.models for group in groups.values()):
            raise ValueError("These groups learn models: pass the cooldown that says when they train.")
        self.groups = dict(groups)
        self.window_length = window_length
        self.cooldown = cooldown
        self.cut_graph = cut_graph
        self.actor_waits_for_models = actor_waits_for_models
        check_count("actor_replay_steps", actor_replay_steps, 0, "It is the replayed steps per window (paper: 0).")
        check_count("actor_replay_windows", actor_replay_windows, hint="It is the number of windows replayed from.")
        simulator_groups = [name for name, group in self.groups.items() if group.source.simulator_graph]
        if actor_replay_steps and simulator_groups:
            raise ValueError(
                f"actor_replay_steps={actor_replay_steps} needs windows without a simulator graph, but group(s) "
                f"{simulator_groups} differentiate the simulator (SHAC, SHAC+), whose graph holds the parameters that "
                "collected it: use actor_replay_steps=0, or SHAC++."
            )
        self.actor_replay_steps = actor_replay_steps
        check_count("likelihood_ratio_steps", likelihood_ratio_steps, 0, "It is PPO's minibatch steps per batch.")
        if likelihood_ratio_minibatch_size is not None:
            check_count("likelihood_ratio_minibatch_size", likelihood_ratio_minibatch_size, hint="Items per step.")
        if likelihood_ratio_steps and all(group.likelihood_ratio_step is None for group in self.groups.values()):
            raise ValueError(
                f"likelihood_ratio_steps={likelihood_ratio_steps} steps the groups' likelihood_ratio_step, and no "
                "group has one: give GroupUpdate(likelihood_ratio_step=...) its optimiser, or likelihood_ratio_steps=0."
            )
        check_count("likelihood_ratio_collections", likelihood_ratio_collections, hint="Batches drawn from (1: this).")
        if likelihood_ratio_collections > 1 and not likelihood_ratio_steps:
            raise ValueError(
                f"likelihood_ratio_collections={likelihood_ratio_collections} keeps batches for PPO's steps, and "
                "likelihood_ratio_steps=0 takes none: give likelihood_ratio_steps, or likelihood_ratio_collections=1."
            )
        self.likelihood_ratio_steps = likelihood_ratio_steps
        self.likelihood_ratio_minibatch_size = likelihood_ratio_minibatch_size
        self.likelihood_ratio_collections = likelihood_ratio_collections
        self.likelihood_ratio_batches = self.new_likelihood_ratio_batches()
        # Its own stream, saved in the state, so that a resumed run draws the minibatches the uninterrupted one draws.
        self.likelihood_ratio_generator = torch.Generator().manual_seed(torch.initial_seed())
        # On the CPU, and each draw moved to the batch's device: a storage on device="auto" forgets its device when a
        # checkpoint is loaded into it before its first write (torchrl 0.11). Its own generator, which its state_dict
        # saves, so that a resumed run draws the windows the uninterrupted one draws.
        self.actor_replay = ReplayBuffer(
            storage=LazyTensorStorage(actor_replay_windows), batch_size=1,
            generator=torch.Generator().manual_seed(torch.initial_seed()),
        )
        self.windows = 0

    def __call__(self, batch: TensorDictBase) -> dict[str, float]:
        """Trains on ``batch`` (see the class docstring) and returns what to log."""
        start = time.perf_counter()
        with record_function("shac/actor_steps"):
            logs = self.train_actors(batch)
            self.cut_graph()
        logs["timers/actor_time"] = time.perf_counter() - start
        data = batch.detach()
        with record_function("shac/value_targets"):
            for group in self.groups.values():
                key = group.value_loss.tensor_keys.value_target
                target = group.value_loss.value_targets(data)
                data.set(key, target)
                batch.set(key, target)
        windows = self.split(data)
        with record_function("shac/new_data_losses"):
            for name, group in self.groups.items():
                for model in group.models:
                    logs[f"train/{name}/new_data_loss_{model.name}"] = model.measure(windows)
        with record_function("shac/cache_writes"):
            for window in windows:
                for group in self.groups.values():
                    for model in group.models:
                        model.store(window)
        for name, group in self.groups.items():
            logs.update({f"train/{name}/dropped_{model.name}_items": model.dropped_items for model in group.models})
        logs["train/non_finite_envs"] = int((~finite_items(data, check_window(data, type(self).__name__))).sum())
        first, self.windows = self.windows, self.windows + len(windows)
        if self.cooldown is not None:
            for _ in filter(self.cooldown.should_train, range(first, self.windows)):
                logs.update(self.train_models())
        if self.likelihood_ratio_steps:
            with record_function("shac/likelihood_ratio_steps"):
                logs.update(self.train_likelihood_ratios(data))
        return logs

    def new_likelihood_ratio_batches(self) -> ReplayBuffer:
        """An empty store of the last ``likelihood_ratio_collections`` batches. Whole batches, not transitions: each
        one's advantages are computed again, over its time dimension, with the critic as it is at each update."""
        return ReplayBuffer(storage=LazyTensorStorage(self.likelihood_ratio_collections))

    def train_likelihood_ratios(self, batch: TensorDictBase) -> dict[str, float]:
        """Step 6 for every group with a ``likelihood_ratio_step``, on ``batch`` and the batches kept before it."""
        batches = batch
        if self.likelihood_ratio_collections > 1:
            if len(self.likelihood_ratio_batches) and self.likelihood_ratio_batches[0].shape != batch.shape:
                # A batch of another shape (a shorter last one): the kept ones are items of one shape.
                self.likelihood_ratio_batches = self.new_likelihood_ratio_batches()
            self.likelihood_ratio_batches.extend(batch.unsqueeze(0).cpu())  # one item: the batch
            batches = self.likelihood_ratio_batches[:].to(batch.device)
        logs = {}
        for name, group in self.groups.items():
            if group.likelihood_ratio_step is not None:
                logs.update(self.train_likelihood_ratio(name, group, batches))
        return logs

    def train_likelihood_ratio(self, name: str, group: GroupUpdate, batches: TensorDictBase) -> dict[str, float]:
        """Step 6: ``likelihood_ratio_steps`` guarded steps of PPO's clipped surrogate on minibatches of the finite
        transitions of ``batches`` (``[*B, T]`` collected batches), drawn without replacement (a new pass over them
        when one is used up)."""
        items = group.actor_loss.likelihood_ratio_items(batches)
        items = items[finite_items(items, 1)]
        if not items.numel():
            return {}
        size = min(self.likelihood_ratio_minibatch_size or items.numel(), items.numel())
        passes = -(-self.likelihood_ratio_steps * size // items.numel())
        generator = self.likelihood_ratio_generator
        order = torch.cat([torch.randperm(items.numel(), generator=generator) for _ in range(passes)])
        infos = []
        for minibatch in order[: self.likelihood_ratio_steps * size].split(size):
            loss = group.actor_loss.minibatch_likelihood_ratio_loss(items[minibatch])
            infos.append({"loss": loss.item(), **group.likelihood_ratio_step(loss)})
        return {
            f"train/{name}/likelihood_ratio_step_loss": sum(info["loss"] for info in infos) / len(infos),
            f"train/{name}/likelihood_ratio_grad_norm": sum(info["grad_norm"] for info in infos) / len(infos),
            f"train/{name}/skipped_likelihood_ratio_steps": group.likelihood_ratio_step.skipped_steps,
        }

    def finite_critic_items(self, name: str, batch: TensorDictBase) -> TensorDictBase:
        """The transitions of ``batch`` (with its value targets) that group ``name``'s critic can regress on: all of
        ``batch`` when its critic inputs and targets are finite, else its finite transitions, flattened; the dropped
        ones are counted in the group's ``dropped_critic_items``. For a critic trained on each batch elsewhere (e.g.
        BenchMARL's optimiser loop), whose minibatches would otherwise carry a NaN into every step."""
        group = self.groups[name]
        value_loss = group.value_loss
        keys = [*value_loss.value_network.in_keys, value_loss.tensor_keys.value_target]
        critic_items = batch.select(*keys, strict=False)
        finite = finite_items(critic_items, batch.batch_dims)
        if finite.all():
            return batch
        group.dropped_critic_items += int((~finite).sum())
        return batch[finite]

    def split(self, batch: TensorDictBase) -> list[TensorDictBase]:
        """``batch`` cut into windows of ``window_length`` steps along its time dimension."""
        time_dim = check_window(batch, type(self).__name__)
        steps = batch.shape[time_dim]
        length = self.window_length or steps
        index = (slice(None),) * time_dim
        return [batch[(*index, slice(begin, begin + length))] for begin in range(0, steps, length)]

    def train_actors(self, batch: TensorDictBase) -> dict[str, float]:
        """Step 1: the actor steps; returns each group's mean losses and gradient norm, and its number of steps.

        A SHAC++ group takes one step per window, each window re-attached to the policy as it is then, then
        ``actor_replay_steps`` per window on windows drawn from the replay, which this batch's windows join, once its
        models have trained. A group whose windows carry the simulator's graph takes one step per batch, on the mean of
        its windows' objectives: the windows of a collected batch are time slices of tensors stacked over all its steps,
        so each window's graph reaches every step of the batch, and a gradient per window would cost a backward pass
        through the whole batch. Such gradients are all taken before any step: a step changes its parameters in place,
        under the graph that the other groups' losses still traverse (one simulator holds every group's actions).
        """
        windows = self.split(batch)
        stepping = {name: group for name, group in self.groups.items() if self.actor_steps_now(group)}
        infos: dict[str, list[dict[str, float]]] = {name: [] for name in stepping}
        simulator_groups = [name for name, group in stepping.items() if group.source.simulator_graph]
        deferred = []
        for name, group in stepping.items():
            if name in simulator_groups:
                losses = [group.actor_loss(window) for window in windows]
                loss = sum(actor_objective(loss) for loss in losses) / len(losses)
                infos[name].append(_loss_info(losses))
                gradients = group.actor_step.gradients(loss, retain_graph=name != simulator_groups[-1])
                deferred.append((name, gradients))
                continue
            for window in windows:
                infos[name].append(self._window_step(group, window))
        if self.actor_replay_steps:
            for window in windows:
                # Not a shorter last window, nor one holding a NaN, whose steps would be skipped at every draw.
                if window.shape == windows[0].shape and finite_items(window, window.batch_dims).all():
                    self.actor_replay.extend(window.detach().unsqueeze(0))  # one item: the window
            # Replayed steps multiply the models' gradient: none through a model that has not trained yet, which
            # would also step the first windows, alone in the replay, again and again.
            replaying = {name: group for name, group in stepping.items() if self.models_trained(group)}
            for _ in range(self.actor_replay_steps * len(windows) if replaying and len(self.actor_replay) else 0):
                replayed = self.actor_replay.sample()[0].to(batch.device)
                for name, group in replaying.items():
                    infos[name].append(self._window_step(group, replayed))
        for name, gradients in deferred:
            group = self.groups[name]
            infos[name][0].update(group.bounded_step(batch, lambda: group.actor_step.apply(gradients)))
        logs = {}
        for name, group in self.groups.items():
            logs[f"train/{name}/skipped_actor_steps"] = group.actor_step.skipped_steps
            logs[f"train/{name}/actor_steps"] = len(infos.get(name, ()))
        for name, group_infos in infos.items():
            for key, logged in ACTOR_STEP_LOGS.items():
                values = [info[key] for info in group_infos if key in info]  # a step bound's keys with a bound only
                if values:
                    logs[f"train/{name}/{logged}"] = sum(values) / len(values)
        return logs

    @staticmethod
    def _window_step(group: GroupUpdate, window: TensorDictBase) -> dict[str, float]:
        """One guarded actor step of a group without a simulator graph on ``window``, re-attached to its policy."""
        losses = group.actor_loss(group.source.differentiable_window(window))
        info = _loss_info([losses])
        loss = actor_objective(losses)
        info.update(group.bounded_step(window, lambda: group.actor_step(loss)))
        return info

    def actor_steps_now(self, group: GroupUpdate) -> bool:
        """Whether ``group``'s actor steps on this batch: always, unless it waits for its source's models to train."""
        return not self.actor_waits_for_models or self.models_trained(group)

    @staticmethod
    def models_trained(group: GroupUpdate) -> bool:
        """Whether each of the models that ``group``'s source differentiates has trained at least once."""
        return all(model.trainings for model in group.source.models)

    def train_models(self) -> dict[str, float]:
        """Step 5: every learned model trains from its cache; returns its surprise, its mean loss and the skip
        counts."""
        start = time.perf_counter()
        logs = {}
        for name, group in self.groups.items():
            for model in group.models:
                logs[f"train/{name}/surprise_{model.name}"] = model.surprise
                with record_function(f"shac/cooldown/{model.name}"):
                    logs[f"train/{name}/loss_{model.name}"] = model.fit(self.cooldown)
                logs[f"train/{name}/skipped_{model.name}_steps"] = model.step.skipped_steps
            if group.value_model is not None and group.target_updater is not None:
                group.target_updater.step()
        logs["timers/model_training_time"] = time.perf_counter() - start
        return logs

    def state_dict(self) -> dict[str, Any]:
        """The window count, and per group the actor's parameters and optimiser, and the learned models' parameters,
        optimisers and caches (the critic's parameters live in its value loss, which the caller saves)."""
        state = {
            "windows": self.windows,
            "groups": {
                name: {
                    "actor": group.actor_loss.state_dict(),
                    "actor_optimizer": group.actor_step.optimizer.state_dict(),
                    "skipped_actor_steps": group.actor_step.skipped_steps,
                    "dropped_critic_items": group.dropped_critic_items,
                    "models": {model.name: model.state_dict() for model in group.models},
                    **(
                        {
                            "likelihood_ratio_optimizer": group.likelihood_ratio_step.optimizer.state_dict(),
                            "skipped_likelihood_ratio_steps": group.likelihood_ratio_step.skipped_steps,
                        }
                        if group.likelihood_ratio_step is not None else {}
                    ),
                }
                for name, group in self.groups.items()
            },
        }
        if len(self.actor_replay):  # TorchRL cannot load an unwritten storage's state (no replayed steps, e.g. SHAC)
            state["actor_replay"] = self.actor_replay.state_dict()
        if self.likelihood_ratio_steps:
            state["likelihood_ratio_generator"] = self.likelihood_ratio_generator.get_state()
        if len(self.likelihood_ratio_batches):
            state["likelihood_ratio_batches"] = self.likelihood_ratio_batches.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.windows = state_dict["windows"]
        if "actor_replay" in state_dict:  # none before the replay existed, or while it is empty
            self.actor_replay.load_state_dict(state_dict["actor_replay"])
        if "likelihood_ratio_generator" in state_dict:  # none without the likelihood-ratio steps
            self.likelihood_ratio_generator.set_state(state_dict["likelihood_ratio_generator"])
        if "likelihood_ratio_batches" in state_dict:  # none while they are kept for one collection only
            self.likelihood_ratio_batches.load_state_dict(state_dict["likelihood_ratio_batches"])
        for name, group in self.groups.items():
            state = state_dict["groups"][name]
            group.actor_loss.load_state_dict(state["actor"])
            load_state_keeping_rates(group.actor_step.optimizer, state["actor_optimizer"])
            group.actor_step.skipped_steps = state["skipped_actor_steps"]
            group.dropped_critic_items = state.get("dropped_critic_items", 0)  # checkpoints before it was counted
            for model in group.models:
                model.load_state_dict(state["models"][model.name])
            if group.likelihood_ratio_step is not None and "likelihood_ratio_optimizer" in state:
                load_state_keeping_rates(group.likelihood_ratio_step.optimizer, state["likelihood_ratio_optimizer"])
                group.likelihood_ratio_step.skipped_steps = state["skipped_likelihood_ratio_steps"]


def actor_objective(losses: TensorDictBase) -> torch.Tensor:
    """What the actor descends: the window loss, the policy mean's penalties and the likelihood-ratio term
    (:class:`SHACActorLoss`'s outputs)."""
    return (
        losses["loss_actor"] + losses["loss_action_bound"] + losses["loss_action_mean"]
        + losses["loss_likelihood_ratio"]
    )


def _loss_info(losses: list[TensorDictBase]) -> dict[str, float]:
    """The mean actor loss, policy-mean penalties, likelihood-ratio term, control-cost weight and share of
    ``losses`` (the actor loss's outputs), for logging."""
    return {
        key: sum(loss[name].item() for loss in losses) / len(losses)
        for key, name in (
            ("actor_loss", "loss_actor"), ("action_bound_loss", "loss_action_bound"),
            ("action_mean_loss", "loss_action_mean"), ("likelihood_ratio_loss", "loss_likelihood_ratio"),
            ("action_mean_weight", "action_mean_weight"), ("action_mean_share", "action_mean_share"),
        )
    }
