"""The window collector: graph kept inside a window, cut between windows, resets, graph modes; the policy graph
re-attached to a graph-free window, and SHAC++'s actor steps on replayed windows."""

from __future__ import annotations

import pytest
import torch
from toy_env import detach_point_masses, make_point_mass_env, open_loop_actor

from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from torchrl.data import Bounded

from torchrl_shacpp.collectors import WindowCollector, WindowGraphCut, attach_policy_graph
from torchrl_shacpp.modules import SlotSet, gaussian_actor
from torchrl_shacpp.trainers import CoolDown, WindowUpdate, make_learners

HORIZON = 4


def point_mass_collector(windows: int, cut_graph=detach_point_masses, **kwargs) -> WindowCollector:
    torch.manual_seed(0)
    start = torch.randn(3, 2, 2)
    actions = 0.1 * torch.randn(windows * HORIZON, 3, 2, 2)
    env = make_point_mass_env(start, terminate_at=[0, 2, 0], max_steps=100)
    return WindowCollector(env, open_loop_actor(actions), window_length=HORIZON, cut_graph=cut_graph, **kwargs)


def action_table_gradient_of_second_window(collector: WindowCollector) -> torch.Tensor:
    """Gradient of the second window's rewards w.r.t. the open-loop action table (rows = steps of both windows)."""
    collector.rollout()
    second = collector.rollout()
    (gradient,) = torch.autograd.grad(second["next", "agents", "reward"].sum(), collector.policy.module.actions)
    return gradient


def test_second_window_gradient_does_not_depend_on_first_window_actions():
    gradient = action_table_gradient_of_second_window(point_mass_collector(2, reset_every=None))
    assert not gradient[:HORIZON].any()
    assert gradient[HORIZON:].abs().sum() > 0


def test_without_the_graph_cut_the_gradient_leaks_into_the_previous_window():
    # Negative control for the test above: the leak is real when the simulator state is not detached.
    collector = point_mass_collector(2, cut_graph=lambda env: None, reset_every=None)
    assert action_table_gradient_of_second_window(collector)[:HORIZON].abs().sum() > 0


def test_consecutive_windows_backpropagate():
    collector = point_mass_collector(3, reset_every=None)
    for window in (collector.rollout(), collector.rollout(), collector.rollout()):
        window["next", "agents", "reward"].sum().backward()


def test_window_shape_time_name_and_done_flags():
    window = point_mass_collector(1).rollout()
    assert window.batch_size == torch.Size([3, HORIZON])
    assert window.names == [None, "time"]
    # env 1 terminates every 2nd step; the step counter never truncates within 100 steps.
    assert window["next", "terminated"][1].squeeze(-1).tolist() == [False, True, False, True]
    assert not window["next", "truncated"].any()
    torch.testing.assert_close(window["next", "done"], window["next", "terminated"])


def test_pre_reset_next_observation_is_kept_and_reset_cuts_the_graph():
    collector = point_mass_collector(1)
    window = collector.rollout()
    env = collector.env.base_env
    actions = window["agents", "action"]
    # After its termination at t=1, env 1 restarts from `start`: its observation at t=2 is the reset state.
    torch.testing.assert_close(window["agents", "observation"][1, 2], env.start[1])
    torch.testing.assert_close(
        window["next", "agents", "observation"][1, 1], env.start[1] + actions[1, 0] + actions[1, 1]
    )
    (gradient,) = torch.autograd.grad(window["next", "agents", "reward"][1, 2].sum(), collector.policy.module.actions)
    assert not gradient[:2, 1].any(), "a reset must cut the graph to the previous episode"
    assert gradient[2, 1].any()
    assert not gradient[:, [0, 2]].any(), "no leakage across environments"


@pytest.mark.parametrize(
    "graph, action_grad, reward_grad", [("simulator", True, True), ("policy", True, False), ("none", False, False)]
)
def test_graph_modes(graph, action_grad, reward_grad):
    window = point_mass_collector(1, graph=graph).rollout()
    assert window["agents", "action"].requires_grad == action_grad
    assert window["next", "agents", "reward"].requires_grad == reward_grad


def test_all_envs_reset_every_k_windows_and_iteration_stops_at_total_frames():
    collector = point_mass_collector(3, reset_every=2, total_frames=3 * 3 * HORIZON)
    windows = list(collector)
    assert len(windows) == 3
    start = collector.env.base_env.start
    assert not torch.allclose(windows[1]["agents", "observation"][:, 0], start)
    torch.testing.assert_close(windows[2]["agents", "observation"][:, 0], start)
    assert collector.state_dict()["frames"] == 36


def test_invalid_arguments_are_named():
    with pytest.raises(ValueError, match="graph must be"):
        point_mass_collector(1, graph="sim")
    with pytest.raises(ValueError, match="window_length"):
        WindowCollector(point_mass_collector(1).env, None, window_length=0)


@pytest.mark.parametrize("learn_std, clamp", [(False, False), (True, False), (False, True), (True, True)])
def test_attached_policy_graph_equals_the_collected_one(learn_std: bool, clamp: bool):
    """A SHAC++ window from a graph-free collector, with the actions' graph re-attached, has the same actions and the
    same policy gradient as the window collected with the policy's graph (``graph="policy"``); with actions clamped
    to a box that about half the samples leave, the clamped components get no gradient in both."""
    torch.manual_seed(0)
    n_agents, dim = 2, 2
    network = torch.nn.Sequential(torch.nn.Linear(dim, 16), torch.nn.Tanh(), torch.nn.Linear(16, dim))
    loc = TensorDictModule(network, in_keys=[("agents", "observation")], out_keys=[("agents", "loc")])
    actor = gaussian_actor(
        loc, action_dim=dim, loc_key=("agents", "loc"), scale_key=("agents", "scale"),
        action_key=("agents", "action"), action_std=0.5, learn_std=learn_std,
        spec=Bounded(-0.3, 0.3, shape=(n_agents, dim)), clamp=clamp,
    )  # fmt: skip
    env = make_point_mass_env(torch.randn(3, n_agents, dim), terminate_at=[0, 0, 0], max_steps=100)
    window = WindowCollector(env, actor, window_length=HORIZON, graph="policy").rollout()
    weights = torch.randn_like(window["agents", "action"])

    def policy_gradient(window) -> list[torch.Tensor]:
        objective = (weights * window["agents", "action"]).sum() + window["agents", "loc"].pow(2).sum()
        return torch.autograd.grad(objective, list(actor.parameters()))

    replayed = attach_policy_graph(
        window.detach(), actor, action_key=("agents", "action"), loc_key=("agents", "loc"),
        scale_key=("agents", "scale"),
    )  # fmt: skip
    torch.testing.assert_close(replayed["agents", "action"], window["agents", "action"], rtol=0, atol=0)
    clamped = window["agents", "action"].abs() == 0.3
    assert (clamped.float().mean() > 0.3) if clamp else not clamped.any()
    for collected, attached in zip(policy_gradient(window), policy_gradient(replayed)):
        torch.testing.assert_close(attached, collected)
    assert len(list(actor.parameters())) == 4 + learn_std


def replay_learners(env, algorithm: str = "shacpp", **replay):
    torch.manual_seed(1)
    return make_learners(env, algorithm, window_length=HORIZON, model_epochs=1, **replay)


def test_make_learners_gives_the_models_the_cooldowns_budgets():
    """The TorchRL path's models train on the budgets BenchMARL's SHAC+ and SHAC++ take as ``algorithm.model_*``."""
    env = make_point_mass_env(torch.randn(3, 2, 2), terminate_at=[0, 0, 0], max_steps=100)
    learners = replay_learners(
        env, model_steps=2, model_first_steps=[5, 4], model_surprise_steps=7, model_surprise_ratio=2.5
    )
    assert learners.update.cooldown == CoolDown(
        every=10, epochs=1, steps=2, first_steps=(5, 4), surprise_steps=7, surprise_ratio=2.5
    )
    assert replay_learners(env, "shac").update.cooldown is None  # no learned model


def test_make_learners_takes_a_policy_network_and_bounds_its_steps():
    """A composing user's policy network (a slot set over each point mass's two coordinates) is the policy's mean and
    what SHAC's actor steps; with ``actor_max_mean_change`` a step that would move the mean on its window further is
    shrunk to move it by that much (to first order), and the change and the scale kept are logged."""
    env = make_point_mass_env(torch.randn(3, 2, 2), terminate_at=[0, 0, 0], max_steps=100)
    torch.manual_seed(1)
    network = SlotSet(0, 1, n_agents=2, out_features=2, hidden_size=16, num_cells=[16])
    learners = make_learners(env, "shac", window_length=HORIZON, policy_network=network, actor_max_mean_change=1e-3)
    assert any(module is network for module in learners.policy.modules())
    before = [parameter.detach().clone() for parameter in network.parameters()]
    window = WindowCollector(env, learners.policy, window_length=HORIZON, graph="simulator").rollout()
    observation = window["agents", "observation"].detach()
    with torch.no_grad():
        mean_before = network(observation)
    logs = learners.update.train_actors(window)
    with torch.no_grad():
        change = (network(observation) - mean_before).pow(2).mean().sqrt().item()
    assert logs["train/agents/actor_mean_change"] > 1e-3 and logs["train/agents/actor_step_scale"] < 1
    assert change == pytest.approx(1e-3, rel=0.1)
    assert all(not torch.equal(old, new) for old, new in zip(before, network.parameters()))


def test_make_learners_passes_the_gradient_bounds_to_shacpps_source_and_refuses_them_elsewhere():
    env = make_point_mass_env(torch.randn(3, 2, 2), terminate_at=[0, 0, 0], max_steps=100)
    learners = replay_learners(
        env, actor_grad_outlier_ratio=10.0, world_gradient_growth=1.5, world_detached_features="integer",
        actor_world_gradient=2.0, world_trusted_error_ratio=10.0,
    )  # fmt: skip
    assert learners.update.groups["agents"].actor_loss.world_gradient == 2.0
    with pytest.raises(ValueError, match="actor_world_gradient=2.0 weighs the gradient through SHAC"):
        replay_learners(env, "shacp", actor_world_gradient=2.0)
    periodic = replay_learners(env, world_periodic_features=[[1, 2.0]]).update.groups["agents"].source
    assert periodic.world.loss.periodic is periodic.world_model.module.transition.periodic
    assert periodic.world.loss.periodic.index.tolist() == [1]
    with pytest.raises(ValueError, match=r"world_periodic_features=\[\[1, 2.0\]\] are read and learned by SHAC"):
        replay_learners(env, world_rollout="one_pass", world_periodic_features=[[1, 2.0]])
    source = learners.update.groups["agents"].source
    assert source.action_grad_outlier_ratio == 10.0 and source.world_model.module.max_gradient_growth == 1.5
    assert source.world_model.module.detached_features == "integer"
    assert source.world_model.module.trusted_error_ratio == 10.0
    with pytest.raises(ValueError, match="actor_grad_outlier_ratio=10.0 bounds the action gradients of SHAC"):
        replay_learners(env, "shacp", actor_grad_outlier_ratio=10.0)
    with pytest.raises(ValueError, match="world_gradient_growth=1.5 bounds the chain of SHAC"):
        replay_learners(env, world_rollout="one_pass", world_gradient_growth=1.5)
    with pytest.raises(ValueError, match="world_detached_features=integer cuts features from the Jacobians of SHAC"):
        replay_learners(env, world_rollout="one_pass", world_detached_features="integer")
    with pytest.raises(ValueError, match="world_trusted_error_ratio=10.0 cuts badly predicted agent-steps from the"):
        replay_learners(env, world_rollout="one_pass", world_trusted_error_ratio=10.0)
    one_pass = replay_learners(
        env, world_rollout="one_pass", world_model_first_epochs=[30, 20], world_model_max_steps=50,
        world_minibatch_size=7,
    )  # fmt: skip
    assert one_pass.update.groups["agents"].source.world.first_epochs == (30, 20)
    assert one_pass.update.groups["agents"].source.world.max_steps == 50
    assert one_pass.update.groups["agents"].source.world.cache.batch_size == 7
    assert replay_learners(env, world_minibatch_size=7).update.groups["agents"].source.world.cache.batch_size == 7
    with pytest.raises(ValueError, match=r"world_model_first_epochs=\[30\] gives passes to the first trainings"):
        replay_learners(env, world_model_first_epochs=[30])
    with pytest.raises(ValueError, match="world_model_max_steps=50 bounds the trainings of SHAC"):
        replay_learners(env, world_model_max_steps=50)


def train_models_on(learners, window: TensorDictBase) -> None:
    """The learned models' first training, on ``window`` alone."""
    for model in learners.update.groups["agents"].source.models:
        model.store(window)
    learners.update.train_models()


def test_replayed_actor_steps_are_further_steps_on_the_policy_as_it_is_then():
    """With a replay of one window, SHAC++'s 2 replayed steps per window are 2 more steps on the window just collected,
    each re-attached to the policy its previous step made (the gradients differ, the loss's values do not): one
    update ends where 3 single updates on the window end. The replayed steps wait for the models' first training.
    SHAC+, whose window carries the simulator graph of the collecting policy, refuses replayed steps."""
    env = make_point_mass_env(torch.randn(3, 2, 2), terminate_at=[0, 0, 0], max_steps=100)
    replaying, single = replay_learners(env, actor_replay_steps=2, actor_replay_windows=1), replay_learners(env)
    window = WindowCollector(env, replaying.policy, window_length=HORIZON).rollout().detach()
    assert replaying.update.train_actors(window)["train/agents/actor_steps"] == 1  # untrained models: no replay
    single.update.train_actors(window)
    train_models_on(replaying, window)
    models = (learners.update.groups["agents"].source.models for learners in (replaying, single))
    for trained, copy in zip(*models):
        copy.load_state_dict(trained.state_dict())  # the same models: two trainings differ in the last bits
    logs = replaying.update.train_actors(window)
    single_logs = [single.update.train_actors(window) for _ in range(3)]
    assert logs["train/agents/actor_steps"] == 3 and single_logs[0]["train/agents/actor_steps"] == 1
    for after_replay, after_singles in zip(replaying.policy.parameters(), single.policy.parameters()):
        torch.testing.assert_close(after_replay, after_singles, rtol=0, atol=0)
    norms = [log["train/agents/actor_grad_norm"] for log in single_logs]
    assert len(set(norms)) == 3 and len({log["train/agents/actor_loss"] for log in single_logs}) == 1
    assert logs["train/agents/actor_grad_norm"] == pytest.approx(sum(norms) / 3)
    with pytest.raises(ValueError, match=r"actor_replay_steps=2 needs windows without a simulator graph.*or SHAC\+\+"):
        replay_learners(env, "shacp", actor_replay_steps=2)


def test_the_actor_replay_holds_the_last_full_length_windows():
    """Batches of 10 steps cut into windows of 4, 4 and 2 steps: the replay keeps the full windows only, the last
    ``actor_replay_windows`` of them, and draws one replayed step per window of the batch."""
    env = make_point_mass_env(torch.randn(3, 2, 2), terminate_at=[0, 0, 0], max_steps=100)
    learners = replay_learners(env)
    update = WindowUpdate(
        learners.update.groups, window_length=HORIZON, cooldown=learners.update.cooldown, actor_replay_steps=1,
        actor_replay_windows=3,
    )
    train_models_on(learners, WindowCollector(env, learners.policy, window_length=HORIZON).rollout().detach())
    collector = WindowCollector(env, learners.policy, window_length=10)
    windows = []
    for _ in range(2):
        batch = collector.rollout().detach()
        logs = update.train_actors(batch)
        assert logs["train/agents/actor_steps"] == 3 + 3
        windows += update.split(batch)[:2]
    stored = update.actor_replay.storage[:]
    assert stored.shape == (3, 3, HORIZON)
    for window in windows[1:]:  # each of the last three full windows is stored, once
        observation = window["agents", "observation"]
        assert sum(torch.equal(replayed, observation) for replayed in stored["agents", "observation"]) == 1


def test_window_graph_cut_cuts_where_armed_and_every_window_length_steps():
    """In a graph-carrying rollout the cut detaches the carried leaves and the env's state at the first step after
    ``arm()`` and every ``window_length`` steps after it; under ``no_grad`` (evaluation) it does nothing."""
    cuts = []
    head = WindowGraphCut(lambda: cuts.append(True), window_length=3)
    x = torch.ones(2, requires_grad=True)

    def step() -> bool:
        """One policy call on a graph-carrying input; whether its graph was cut."""
        return not head(TensorDict({"obs": x * 2}, [2]))["obs"].requires_grad

    assert [step() for _ in range(7)] == [False, False, False, True, False, False, True] and len(cuts) == 2
    with torch.no_grad():
        head.arm()
        assert head(TensorDict({"obs": x * 2}, [2]))["obs"] is not None and head.armed  # evaluation: still armed
    assert [step() for _ in range(4)] == [True, False, False, True] and len(cuts) == 4
    with pytest.raises(ValueError, match="window_length"):
        WindowGraphCut(lambda: None, window_length=0)
