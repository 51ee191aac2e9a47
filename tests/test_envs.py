"""The VMAS tasks: reward values equal VMAS's, gradients match finite differences, done flags, graph cutting."""

from __future__ import annotations

import math

import pytest
import torch
import vmas
from tensordict import TensorDictBase
from torch.nn.functional import cosine_similarity
from torchrl.envs import EnvBase
from torchrl.envs.libs.vmas import VmasWrapper
from vmas.scenarios.sampling import Scenario as VmasSampling
from vmas.scenarios.transport import Scenario as VmasTransport

from torchrl_shacpp.envs import (
    CentredRotationBalance,
    DifferentiableNavigation,
    DifferentiableSampling,
    DifferentiableTransport,
    detach_simulator_state,
    get_vmas_task,
    make_vmas_env,
    task_has_differentiable_reward,
    vmas_environment,
)

NUM_ENVS = 8


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def teleport_package_to_goal(env: EnvBase, env_index: int) -> None:
    """Puts transport's package on its goal in one env: the next step terminates that env."""
    package = vmas_environment(env).scenario.packages[0]
    package.set_pos(package.goal.state.pos[env_index], batch_index=env_index)


def scripted_rollout(env: EnvBase, actions: torch.Tensor, teleports: dict[int, int] | None = None) -> TensorDictBase:
    """Steps ``env`` with ``step_and_maybe_reset`` through ``actions`` ([T, B, n, 2]); returns the [B, T] rollout.

    Env ``b`` starts ``b`` steps into its first episode, so envs truncate (and reset) at different steps.
    ``teleports`` maps a step to an env whose package is put on the goal before that step (transport).
    """
    td = env.reset()
    td["step_count"] = torch.arange(env.batch_size[0])[:, None]
    steps = []
    for t, action in enumerate(actions):
        if teleports and t in teleports:
            teleport_package_to_goal(env, teleports[t])
        td["agents", "action"] = action
        stepped, td = env.step_and_maybe_reset(td)
        steps.append(stepped)
    return torch.stack(steps, dim=1)


@pytest.mark.parametrize(
    "task, n_agents, kwargs",
    [
        ("transport", 1, {}),
        ("transport", 3, {}),
        ("sampling", 3, {}),
        ("sampling", 3, {"lookahead_coef": 0.5}),
        ("navigation", 3, {}),
    ],
)
def test_reward_values_equal_vmas_through_terminations_truncations_and_per_env_resets(task, n_agents, kwargs):
    steps, max_steps = 24, 10
    actions = torch.rand(steps, NUM_ENVS, n_agents, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    teleports = {3: 2, 7: 5, 15: 2} if task == "transport" else None

    def run(differentiable_reward: bool, **scenario_kwargs) -> TensorDictBase:
        env = make_vmas_env(
            task,
            num_envs=NUM_ENVS,
            n_agents=n_agents,
            max_steps=max_steps,
            differentiable_reward=differentiable_reward,
            grad_enabled=differentiable_reward,
            seed=0,
            **scenario_kwargs,
        )
        return scripted_rollout(env, actions.clone().requires_grad_(differentiable_reward), teleports)

    ours, theirs = run(True, **kwargs), run(False)
    # The rollout covers what it claims: several episodes per env, truncations at different steps, terminations.
    assert (theirs["next", "done"].sum(1) >= 2).all()
    assert not theirs["next", "truncated"].all(0).any()
    if task == "transport":
        assert theirs["next", "terminated"].sum() == len(teleports)
    assert ours["next", "agents", "reward"].requires_grad
    for key in [("next", "agents", "reward"), ("next", "agents", "observation"), ("next", "done")]:
        torch.testing.assert_close(ours[key].detach(), theirs[key], rtol=0, atol=0)


def test_terminated_and_truncated_are_told_apart_and_only_done_envs_reset():
    env = make_vmas_env("transport", num_envs=4, n_agents=2, max_steps=3, seed=0)
    td = env.reset()
    for t in range(3):
        if t == 1:
            teleport_package_to_goal(env, 0)
        td["agents", "action"] = torch.zeros(4, 2, 2)
        stepped, td = env.step_and_maybe_reset(td)
        nxt = stepped["next"]
        assert torch.equal(nxt["done"], nxt["terminated"] | nxt["truncated"])
        if t == 1:  # env 0 terminated (package on goal), none truncated
            assert nxt["terminated"].squeeze(-1).tolist() == [True, False, False, False]
            assert not nxt["truncated"].any()
            assert td["step_count"].squeeze(-1).tolist() == [0, 2, 2, 2]
            kept = nxt["agents", "observation"][1:]
            assert torch.equal(td["agents", "observation"][1:], kept)  # not reset: continues from the next obs
            assert not torch.equal(td["agents", "observation"][0], nxt["agents", "observation"][0])
    # Step 3 hits the time limit of envs 1-3 (env 0 is one step into its second episode).
    assert nxt["truncated"].squeeze(-1).tolist() == [False, True, True, True]
    assert not nxt["terminated"].any()


def transport_at(
    agent_positions: list[list[float]], approach_coef: float, scenario=DifferentiableTransport, **kwargs
):
    """Transport in 4 envs with the package at the origin, a different goal per env and the agents at
    ``agent_positions`` (the same in every env); ``kwargs`` go to the differentiable scenario."""
    kwargs = {"approach_coef": approach_coef, **kwargs} if scenario is DifferentiableTransport else {}
    n_agents = len(agent_positions)
    env = vmas.make_env(scenario(), num_envs=4, seed=0, grad_enabled=True, n_agents=n_agents, **kwargs)
    package = env.scenario.packages[0]
    package.set_pos(torch.zeros(4, 2), batch_index=None)
    package.goal.set_pos(torch.tensor([[0.6, 0.3], [0.5, -0.4], [-0.2, 0.7], [0.7, 0.0]]), batch_index=None)
    package.global_shaping = torch.linalg.vector_norm(package.goal.state.pos, dim=1) * env.scenario.shaping_factor
    for agent, pos in zip(env.agents, agent_positions, strict=True):
        agent.set_pos(torch.tensor([pos]).repeat(4, 1), batch_index=None)
    return env


def transport_in_contact(approach_coef: float, scenario=DifferentiableTransport):
    """One agent 2 mm into the package's -x face, about to push it along +x."""
    return transport_at([[-0.103, 0.0]], approach_coef, scenario)


def transport_apart(approach_coef: float):
    """Three agents well away from the package: no contact within a few steps."""
    return transport_at([[-0.6, 0.1], [0.1, -0.7], [0.5, 0.6]], approach_coef)


def step_rewards(env, actions: torch.Tensor) -> torch.Tensor:
    """[T, B] rewards of agent 0 under open-loop ``actions`` ([T, n_agents, B, 2])."""
    return torch.stack([env.step(list(action))[1][0] for action in actions])


def central_differences(loss, actions: torch.Tensor, eps: float) -> torch.Tensor:
    """Central differences of the per-env ``loss(actions)`` ([B]) w.r.t. ``actions[0]`` ([n_agents, B, 2])."""
    fd = torch.zeros_like(actions[0])
    for agent in range(actions.shape[1]):
        for dim in range(2):
            shift = torch.zeros_like(actions)
            shift[0, agent, :, dim] = eps
            fd[agent, :, dim] = (loss(actions + shift) - loss(actions - shift)) / (2 * eps)
    return fd


def first_action_gradient(env, actions: torch.Tensor) -> torch.Tensor:
    actions = actions.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(step_rewards(env, actions).sum(), actions)
    return gradient[0]


def push_actions(horizon: int, n_agents: int) -> torch.Tensor:
    actions = 0.1 * torch.randn(horizon, n_agents, 4, 2, generator=torch.Generator().manual_seed(0))
    actions[..., 0] += 0.8
    return actions


def test_transport_contact_gradient_matches_finite_differences_and_vmas():
    actions = push_actions(8, 1)
    gradient = first_action_gradient(transport_in_contact(0.0), actions)
    fd = central_differences(lambda a: step_rewards(transport_in_contact(0.0), a).sum(0), actions, eps=1e-2)
    assert fd.abs().max() > 1e-2  # the contact does move the package
    torch.testing.assert_close(gradient, fd, rtol=0.05, atol=2e-3)
    # With the approach term off, the gradient is VMAS's own.
    assert torch.equal(gradient, first_action_gradient(transport_in_contact(0.0, VmasTransport), actions))


def approach_potential(env) -> torch.Tensor:
    r"""[B] :math:`\Phi = -\sum_i \sqrt{\lVert x_i - \tau_i\rVert^2 + r_a^2}` recomputed from the docstring's formula."""
    scenario = env.scenario
    package = scenario.packages[0]
    c = 0.075 + scenario.agent_radius
    to_goal = package.goal.state.pos - package.state.pos
    u = to_goal / to_goal.norm(dim=-1, keepdim=True)
    u_perp = torch.stack([-u[:, 1], u[:, 0]], dim=-1)
    potential = 0.0
    for agent in env.agents:
        relative = agent.state.pos - package.state.pos
        behind = ((relative * u).sum(-1, keepdim=True) < -c / 2).detach()
        side = torch.sign((relative * u_perp).sum(-1, keepdim=True)).detach()
        target = torch.where(behind, package.state.pos - c * u, package.state.pos - c * u + 2 * c * side * u_perp)
        potential = potential - ((agent.state.pos - target).square().sum(-1) + scenario.agent_radius**2).sqrt()
    return potential


def test_transport_approach_target_leads_agents_on_the_goal_side_around_the_package():
    # Envs 0 and 3 (goals (0.6, 0.3) and (0.7, 0)): agent 0 is behind the package, agents 1 and 2 on the goal
    # side, on either side of the package-goal line.
    env = transport_at([[-0.3, 0.0], [0.3, 0.2], [0.3, -0.2]], approach_coef=1.0)
    scenario, package = env.scenario, env.scenario.packages[0]
    c = scenario.push_offset
    envs = [0, 3]
    targets = [scenario._approach_target(package, agent.state.pos)[envs] for agent in env.agents]
    u = package.goal.state.pos[envs] / package.goal.state.pos[envs].norm(dim=-1, keepdim=True)
    torch.testing.assert_close(targets[0], -c * u)  # the push point
    for target in targets[1:]:
        assert (target.norm(dim=-1) > 0.2).all()  # a waypoint clear of the package (half-diagonal 0.106 + r_a)
        torch.testing.assert_close((target * u).sum(-1), torch.full((2,), -c))  # level with the push point
    torch.testing.assert_close(targets[1] + targets[2], -2 * c * u)  # mirror images across the package-goal line


@pytest.mark.parametrize("blend, continuous", [(0.0, False), (0.05, True)])
def test_transport_approach_blend_makes_the_potential_continuous(blend: float, continuous: bool):
    """The hard switch from a waypoint to the push point makes Φ jump (by the waypoint's offset, less the distance
    already covered) where an agent beside the package crosses the line half-way behind it; ``approach_blend`` > 0
    blends the targets over that width, and the jump goes. (Across the package-goal line in front of the package
    the target flips sides but Φ does not jump: the two waypoints are equally far.)"""
    env = transport_at([[0.0, 0.0]], approach_coef=1.0, approach_blend=blend)
    scenario, package = env.scenario, env.scenario.packages[0]
    u = package.goal.state.pos / package.goal.state.pos.norm(dim=-1, keepdim=True)
    u_perp = torch.stack([-u[:, 1], u[:, 0]], dim=-1)
    c, eps = scenario.push_offset, 1e-4
    crossing = -0.5 * c * u + 2 * c * u_perp  # on the behind line, at the waypoint's offset beside the package
    potentials = [
        -(((x - scenario._approach_target(package, x)) ** 2).sum(-1) + scenario.agent_radius**2).sqrt()
        for x in (crossing - eps * u, crossing + eps * u)
    ]
    jump = (potentials[1] - potentials[0]).abs()
    assert (jump < 1e-3).all() if continuous else (jump > 0.1).all()
    if not continuous:
        return
    far = [-3 * c * u + 0.01 * u_perp, 3 * c * u + 3 * c * u_perp]  # well behind; well in front and to one side
    targets = [scenario._approach_target(package, x) for x in far]
    torch.testing.assert_close(targets[0], -c * u, atol=2e-3, rtol=0)  # the push point, as the hard switch
    torch.testing.assert_close(targets[1], -c * u + 2 * c * u_perp, atol=2e-3, rtol=0)  # the waypoint on its side


def test_transport_refuses_a_negative_approach_blend():
    with pytest.raises(ValueError, match="approach_blend=-0.05 is not a width: use 0 for the hard switch"):
        vmas.make_env(DifferentiableTransport(), num_envs=2, n_agents=2, approach_blend=-0.05)


def test_transport_goal_frame_observation_is_the_offset_along_and_across_the_package_goal_line():
    """Closed form: the package at (1, 1), its goal at (1, 3) (u = +y, u⊥ = -x); an agent at (0.5, 0.8) is 0.2 behind
    the package and 0.5 to u⊥'s side; VMAS's observation comes first, unchanged, and the offset carries the gradient
    of the agent's position."""
    kwargs = {"num_envs": 1, "n_agents": 1, "approach_reward": True}
    plain = vmas.make_env(DifferentiableTransport(), **kwargs)
    framed = vmas.make_env(DifferentiableTransport(), **kwargs, goal_frame_observation=True)
    for env in (plain, framed):
        scenario = env.scenario
        scenario.packages[0].set_pos(torch.tensor([[1.0, 1.0]]), batch_index=None)
        scenario.packages[0].goal.set_pos(torch.tensor([[1.0, 3.0]]), batch_index=None)
        scenario.world.agents[0].set_pos(torch.tensor([[0.5, 0.8]], requires_grad=True), batch_index=None)
    agent = framed.scenario.world.agents[0]
    observation = framed.scenario.observation(agent)
    assert observation.shape[-1] == plain.scenario.observation(plain.scenario.world.agents[0]).shape[-1] + 2
    assert torch.equal(observation[:, :-2], plain.scenario.observation(plain.scenario.world.agents[0]))
    assert observation[0, -2:].tolist() == pytest.approx([-0.2, 0.5])
    (along,) = torch.autograd.grad(observation[0, -2], agent.state.pos)
    assert along[0].tolist() == pytest.approx([0.0, 1.0])


def test_transport_contact_observation_is_the_gap_to_the_package():
    """Closed form: the package (side 0.15) at (1, 1); an agent (radius 0.03) at (1.1, 1.0) overlaps its face by
    0.005 (gap -0.005), one at (1.2, 1.2) is 0.125·√2 - 0.03 from its corner; after the goal frame's two offsets."""
    env = vmas.make_env(
        DifferentiableTransport(), num_envs=2, n_agents=1, goal_frame_observation=True, contact_observation=True
    )
    scenario = env.scenario
    scenario.packages[0].set_pos(torch.tensor([[1.0, 1.0]]).expand(2, 2), batch_index=None)
    scenario.packages[0].goal.set_pos(torch.tensor([[1.0, 3.0]]).expand(2, 2), batch_index=None)
    scenario.world.agents[0].set_pos(torch.tensor([[1.1, 1.0], [1.2, 1.2]]), batch_index=None)
    observation = scenario.observation(scenario.world.agents[0])
    assert observation.shape[-1] == 11 + 2 + 1
    assert observation[:, -1].tolist() == pytest.approx([-0.005, 0.125 * 2**0.5 - 0.03], abs=1e-6)


def test_transport_penetration_observation_is_the_contact_force_up_to_a_factor():
    """Closed form: the package (side 0.15) at (1, 1); an agent (radius 0.03) at (1.1, 1.0) overlaps its right face
    by 0.005, one at (1.0, 0.905) its bottom face by 0.01, one at (1.2, 1.2) does not touch it: (0.005 / 0.03)·(1, 0),
    (0.01 / 0.03)·(0, -1) and 0. From rest with no action, VMAS's step gives each agent a velocity along its feature,
    larger where it is deeper (over the step's substeps the agent moves out, so not in proportion)."""
    env = vmas.make_env(DifferentiableTransport(), num_envs=3, n_agents=1, penetration_observation=True)
    scenario = env.scenario
    scenario.packages[0].set_pos(torch.tensor([[1.0, 1.0]]).expand(3, 2), batch_index=None)
    scenario.packages[0].goal.set_pos(torch.tensor([[1.0, 3.0]]).expand(3, 2), batch_index=None)
    scenario.world.agents[0].set_pos(torch.tensor([[1.1, 1.0], [1.0, 0.905], [1.2, 1.2]]), batch_index=None)
    scenario.world.agents[0].set_vel(torch.zeros(3, 2), batch_index=None)
    penetration = scenario.observation(scenario.world.agents[0])[:, -2:]
    assert penetration.flatten().tolist() == pytest.approx([0.005 / 0.03, 0, 0, -0.01 / 0.03, 0, 0], abs=1e-6)
    env.step([torch.zeros(3, 2)])
    velocity = scenario.world.agents[0].state.vel
    assert velocity[2].abs().max() < 1e-6
    assert cosine_similarity(velocity[:2], penetration[:2]).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    assert velocity[1].norm() > velocity[0].norm() > 0.05
    # An agent whose centre is inside the package: no normal, the feature 0 and its gradient finite and 0.
    inside = torch.tensor([[1.0, 1.0]]).expand(3, 2).clone().requires_grad_(True)
    scenario.world.agents[0].set_pos(inside, batch_index=None)
    feature = scenario.observation(scenario.world.agents[0])[:, -2:]
    (gradient,) = torch.autograd.grad(feature.sum(), inside)
    assert feature.abs().max() == 0 and torch.equal(gradient, torch.zeros(3, 2))


def transport_around(positions: torch.Tensor, blend: float):
    """Transport with ``approach_path="around"``, one agent per env at ``positions`` ([B, 2]), the package at the origin
    and its goal at (1, 0): the scenario, the package, and Φ at ``positions`` with its graph."""
    env = vmas.make_env(
        DifferentiableTransport(), num_envs=len(positions), n_agents=1, approach_reward=True,
        approach_blend=blend, approach_path="around",
    )  # fmt: skip
    scenario, package = env.scenario, env.scenario.packages[0]
    package.set_pos(torch.zeros(len(positions), 2), batch_index=None)
    package.goal.set_pos(torch.tensor([[1.0, 0.0]]).expand(len(positions), 2), batch_index=None)
    return scenario, package, scenario._approach_potential(package, [positions])


@pytest.mark.parametrize("blend", [0.0, 0.05])
def test_transport_way_around_has_its_closed_forms(blend: float):
    """Behind the package in view of the rim's back point h_R: straight there, then in to the push point h (0 at h);
    in front on the package-goal line: the tangent, half the rim less the tangent's angle, and the way in, both sides
    alike (their soft minimum less β log 2); at the rim's side point, a quarter of the rim and the way in."""
    scenario, _, _ = transport_around(torch.zeros(1, 2), blend)
    c, rim = scenario.push_offset, scenario.package_radius
    assert rim == pytest.approx(0.075 * 2**0.5 + 0.03)
    tangent = (0.3**2 - rim**2) ** 0.5
    front = tangent + rim * (math.pi - math.atan2(tangent, rim)) + rim - c - blend * math.log(2)
    positions = torch.tensor([[-0.3, 0.0], [-c, 0.0], [0.3, 0.0], [0.0, rim]])
    scenario, package, _ = transport_around(positions, blend)
    expected = torch.tensor([0.3 - c, 0.0, front, rim * math.pi / 2 + rim - c])
    torch.testing.assert_close(scenario._way_around(package, positions), expected, atol=1e-4, rtol=0)


def test_transport_way_around_is_continuous_and_its_gradient_matches_finite_differences():
    """Φ along circles round the package (inside the rim, where agents touch it, and outside, across the tangent's
    view of h_R) and across the rim moves by no more than the step allows; at points in general position
    (outside, inside, behind, beside) autograd's gradient is the central differences'."""
    angles = torch.linspace(-math.pi, math.pi, 2001)
    for radius in (0.12, 0.2):
        ring = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)
        *_, potential = transport_around(ring, 0.05)
        assert (potential.diff().abs() < 3 * radius * (angles[1] - angles[0])).all()
    radii = torch.linspace(0.12, 0.15, 301)
    for angle in (0.3, 1.5, 2.8):
        ray = radii.unsqueeze(-1) * torch.tensor([[math.cos(angle), math.sin(angle)]])
        *_, potential = transport_around(ray, 0.05)
        assert (potential.diff().abs() < 3 * (radii[1] - radii[0])).all()
    points = torch.tensor([[-0.4, 0.13], [0.3, -0.25], [-0.11, 0.06], [0.02, 0.125], [0.11, -0.05], [0.5, 0.5]])
    positions = points.clone().requires_grad_(True)
    *_, potential = transport_around(positions, 0.05)
    (gradient,) = torch.autograd.grad(potential.sum(), positions)
    eps, fd = 1e-3, torch.zeros_like(points)
    for dim in range(2):
        shift = torch.zeros_like(points)
        shift[:, dim] = eps
        fd[:, dim] = (transport_around(points + shift, 0.05)[2] - transport_around(points - shift, 0.05)[2]) / (2 * eps)
    torch.testing.assert_close(gradient, fd, atol=2e-3, rtol=0.02)


def test_transport_way_around_leads_along_the_goal_face_and_presses_only_from_behind():
    """An agent touching the package's goal face is led along it (the waypoint potential pulls it 0.89-0.99 into
    the face, what pushes the package away): into the face at most the sine of its angle off the line; touching the
    back face, it is led to the push point and pressed in."""
    c = 0.105
    offsets = torch.tensor([0.1, 0.25, 0.5, 0.75])
    front = torch.stack([torch.full_like(offsets, c), c * offsets], dim=-1).requires_grad_(True)
    *_, potential = transport_around(front, 0.05)
    (pull,) = torch.autograd.grad(potential.sum(), front)
    into_face = -pull[:, 0] / pull.norm(dim=-1)
    assert (into_face < offsets / (1 + offsets**2) ** 0.5 + 1e-3).all()
    assert (pull[:, 1] > 0).all()  # round the side it is on
    back = torch.tensor([[-c, 0.5 * c]], requires_grad=True)
    *_, potential = transport_around(back, 0.05)
    (pull,) = torch.autograd.grad(potential.sum(), back)
    assert pull[0, 0] > 0 and pull[0, 1] < 0  # into the back face (towards the goal), and along it to the push point


def test_transport_refuses_an_unknown_approach_path():
    with pytest.raises(ValueError, match="approach_path='round' is not one of .*'around' for the shortest way"):
        vmas.make_env(DifferentiableTransport(), num_envs=2, n_agents=2, approach_path="round")


def test_transport_gradient_before_contact_is_the_approach_potentials():
    actions = push_actions(5, 3)
    assert not step_rewards(transport_apart(2.0), actions.clone().requires_grad_(True)).any()  # VMAS's reward: 0 ...
    assert not step_rewards(transport_apart(0.0), actions.clone().requires_grad_(True)).requires_grad  # ... no graph

    def approach_return(a: torch.Tensor) -> torch.Tensor:  # telescoped sum of 2·(Φ_t - Φ_{t-1})
        env = transport_apart(2.0)
        start = approach_potential(env)
        step_rewards(env, a)
        return 2.0 * (approach_potential(env) - start)

    fd = central_differences(approach_return, actions, eps=1e-2)
    gradient = first_action_gradient(transport_apart(2.0), actions)
    assert fd.abs().min() > 1e-3
    torch.testing.assert_close(gradient, fd, rtol=0.02, atol=1e-4)


def test_transport_approach_reward_pays_the_potential_difference_and_reports_vmas_reward():
    """``approach_reward=True``: the reward is VMAS's plus :math:`\\Phi_t - \\Phi_{t-1}` (after a reset, from the reset
    state's potential), VMAS's reward is the info ``task_reward``, and the gradient is the gradient-only form's."""
    n_envs, steps = 16, 40

    def make(scenario, **kwargs):
        return vmas.make_env(scenario(), num_envs=n_envs, seed=1, grad_enabled=True, n_agents=3, **kwargs)

    shaped, plain, graph_only = make(DifferentiableTransport, approach_reward=True), make(VmasTransport), make(
        DifferentiableTransport
    )
    generator = torch.Generator().manual_seed(0)
    previous, actions, rewards, graph_rewards, vmas_rewards = approach_potential(shaped).detach(), [], [], [], []
    for t in range(steps):
        if t == steps // 2:  # one env resets mid-episode: its previous potential is the reset state's
            for env in (shaped, plain, graph_only):
                env.seed(2)  # the same reset state in each
                env.reset_at(0)
            previous[0] = approach_potential(shaped)[0].detach()
        package = shaped.scenario.packages[0].state.pos.detach()
        towards = [package - agent.state.pos.detach() for agent in shaped.agents]  # agents run into the package
        noise = torch.randn(3, n_envs, 2, generator=generator)
        action = (torch.stack([d / d.norm(dim=-1, keepdim=True) for d in towards]) + 0.5 * noise).clamp(-0.99, 0.99)
        actions.append(action.requires_grad_(True))
        reward, info = (out[0] for out in shaped.step(list(action))[1::2])  # agent 0's reward and info
        vmas_rewards.append(plain.step(list(action.detach()))[1][0])
        graph_rewards.append(graph_only.step(list(action))[1][0])
        potential = approach_potential(shaped)
        on_goal = shaped.scenario.packages[0].on_goal
        assert torch.equal(info["task_reward"], vmas_rewards[-1].detach())
        torch.testing.assert_close(reward - vmas_rewards[-1], (potential - previous) * ~on_goal, atol=1e-5, rtol=0)
        previous = potential.detach()
        rewards.append(reward)
    assert torch.stack(vmas_rewards).count_nonzero() > 10  # contacts: VMAS's reward is not trivially 0
    shaped_gradient = torch.stack(torch.autograd.grad(torch.stack(rewards).sum(), actions))
    graph_gradient = torch.stack(torch.autograd.grad(torch.stack(graph_rewards).sum(), actions))
    assert shaped_gradient.abs().sum() > 1
    torch.testing.assert_close(shaped_gradient, graph_gradient, rtol=1e-4, atol=1e-5)


def sampling_env(scenario=DifferentiableSampling, **kwargs):
    return vmas.make_env(scenario(), num_envs=NUM_ENVS, seed=3, grad_enabled=True, n_agents=3, **kwargs)


def test_sampling_gradient_matches_finite_differences_inside_cells():
    actions = torch.rand(3, 3, NUM_ENVS, 2, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8
    visited = []

    def rewards(a: torch.Tensor) -> torch.Tensor:
        env = sampling_env()
        total = step_rewards(env, a).sum(0)
        visited.append(env.scenario.sampled.clone())
        return total

    rewards(actions)
    fd = central_differences(rewards, actions, eps=1e-3)
    # FD is only the derivative where no perturbation moved an agent into another cell.
    same_cells = torch.stack([(v == visited[0]).flatten(1).all(1) for v in visited[1:]]).all(0)
    assert same_cells.sum() >= NUM_ENVS - 2
    gradient = first_action_gradient(sampling_env(), actions)
    assert gradient[:, same_cells].abs().sum() > 0.1
    torch.testing.assert_close(gradient[:, same_cells], fd[:, same_cells], rtol=0.02, atol=2e-3)


def test_sampling_lookahead_reads_the_unvisited_value_grid_bilinearly_between_cell_centres():
    scenario = sampling_env(lookahead_coef=1.0).scenario
    cells = torch.arange(scenario.n_x_cells, dtype=torch.float32)
    # G[ix, iy] = ix + 10·iy is linear, so its bilinear interpolation is the same linear function of the position.
    scenario.cell_values = (cells[:, None] + 10 * cells[None, :]).expand(NUM_ENVS, -1, -1).clone()
    scenario.sampled.zero_()
    pos = (torch.rand(NUM_ENVS, 2, generator=torch.Generator().manual_seed(0)) * 1.8 - 0.9).requires_grad_(True)
    value = scenario.value_grid_at(pos)
    continuous_cell = (pos.detach() + 1) / scenario.grid_spacing - 0.5  # centres at integers
    torch.testing.assert_close(value.detach(), continuous_cell[:, 0] + 10 * continuous_cell[:, 1])
    (slope,) = torch.autograd.grad(value.sum(), pos)
    torch.testing.assert_close(slope, torch.tensor([1.0, 10.0]).expand(NUM_ENVS, 2) / scenario.grid_spacing)
    # Visited cells read 0: marking the agent's own cell visited lowers the value there.
    cell = scenario._cell_index(pos.detach())
    scenario.sampled[torch.arange(NUM_ENVS), cell[:, 0], cell[:, 1]] = True
    assert (scenario.value_grid_at(pos.detach()) < value.detach()).all()


def rollout_with_per_env_resets(env: EnvBase, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of rewards of an open-loop rollout whose envs truncate at different steps, and its action leaf."""
    shape = (steps, env.batch_size[0], vmas_environment(env).n_agents, 2)
    actions = (0.5 * torch.randn(shape, generator=torch.Generator().manual_seed(2))).requires_grad_(True)
    rollout = scripted_rollout(env, actions)
    assert rollout["next", "truncated"].any() and not rollout["next", "truncated"].all(0).any()
    return rollout["next", "agents", "reward"].sum(), actions


def test_sampling_backward_through_per_env_resets():
    env = make_vmas_env("sampling", num_envs=4, n_agents=2, max_steps=3, grad_enabled=True, seed=0)
    total, actions = rollout_with_per_env_resets(env, steps=5)
    (gradient,) = torch.autograd.grad(total, actions)
    assert gradient.abs().sum() > 0
    # Negative control: VMAS's own scenario writes max_pdf in place at the per-env reset.
    plain = make_vmas_env(
        "sampling", num_envs=4, n_agents=2, max_steps=3, grad_enabled=True, seed=0, differentiable_reward=False
    )
    total, actions = rollout_with_per_env_resets(plain, steps=5)
    with pytest.raises(RuntimeError, match="inplace"):
        torch.autograd.grad(total, actions)


def test_transport_reset_cuts_the_graph_of_the_reset_env_only():
    env = make_vmas_env("transport", num_envs=4, n_agents=3, max_steps=3, grad_enabled=True, seed=0)
    actions = (0.5 * torch.randn(5, 4, 3, 2, generator=torch.Generator().manual_seed(2))).requires_grad_(True)
    rollout = scripted_rollout(env, actions)  # env b truncates after 3 - b steps (env 0 after 3, env 2 after 1)
    reward = rollout["next", "agents", "reward"][..., 0, 0]  # [B, T], shared by the agents
    assert rollout["next", "truncated"][2, 0] and not rollout["next", "done"][2, 1:3].any()
    (gradient,) = torch.autograd.grad(reward[2, 1:3].sum(), actions)  # env 2's second episode ...
    assert not gradient[0].any()  # ... does not depend on its first episode's action ...
    assert not gradient[:, [0, 1, 3]].any()  # ... nor on any other env
    assert gradient[1:3, 2].any()


def two_windows(env: EnvBase, cut) -> tuple[torch.Tensor, torch.Tensor]:
    """Backpropagates a first window, calls ``cut(env)``, and returns the second window's reward sum and the
    first window's action leaf."""
    td = env.reset()
    windows = []
    for _ in range(2):
        actions = (0.5 * torch.randn(4, *env.full_action_spec["agents", "action"].shape)).requires_grad_(True)
        rewards = []
        for action in actions:
            td["agents", "action"] = action
            stepped, td = env.step_and_maybe_reset(td)
            rewards.append(stepped["next", "agents", "reward"])
        windows.append((torch.stack(rewards).sum(), actions))
        if len(windows) == 1:
            windows[0][0].backward()
            td = td.detach()
            cut(env)
    return windows[1][0], windows[0][1]


@pytest.mark.parametrize("task", ["transport", "sampling", "navigation"])
def test_consecutive_windows_backpropagate_after_detaching_the_simulator_state(task):
    env = make_vmas_env(task, num_envs=4, n_agents=3, grad_enabled=True, seed=0)
    second, first_actions = two_windows(env, detach_simulator_state)
    first_actions.grad = None
    second.backward()
    assert first_actions.grad is None  # nothing of the second window reaches the first one's actions


@pytest.mark.parametrize(
    "make_simulator, n_agents",
    [(lambda: transport_in_contact(0.0), 1), (lambda: transport_apart(1.0), 3)],
    ids=["contact-global_shaping", "apart-approach_potential"],
)
def test_world_zero_grad_alone_leaves_transport_a_stale_graph(make_simulator, n_agents):
    # Negative control for the test above. In contact, VMAS's global_shaping carries the graph; before contact,
    # the approach potential's state does. world.zero_grad() detaches neither; detach_simulator_state does.
    simulator = make_simulator()

    def window() -> None:
        step_rewards(simulator, push_actions(4, n_agents).requires_grad_(True)).sum().backward()

    window()
    detach_simulator_state(VmasWrapper(simulator))
    window()
    simulator.world.zero_grad()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        window()


def navigation_step(collision_coef: float, gap: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Two agents of navigation (radius 0.1) ``gap`` apart along x, goals far up; one step from zero actions.

    Returns the actions ([2, B, 2], requiring grad), the agents' rewards ([2, B]) and the scenario's smoothed penalty
    :math:`P \sigma((m - d) / w)` of the pair at the new positions ([B])."""
    env = vmas.make_env(
        DifferentiableNavigation(), num_envs=4, seed=0, grad_enabled=True, n_agents=2, collision_coef=collision_coef
    )
    scenario = env.scenario
    for agent, x in zip(env.agents, (-0.1 - gap / 2, 0.1 + gap / 2)):
        agent.set_pos(torch.tensor([[x, 0.0]]).repeat(4, 1), batch_index=None)
        agent.goal.set_pos(torch.tensor([[x, 0.9]]).repeat(4, 1), batch_index=None)
        agent.pos_shaping = torch.linalg.vector_norm(agent.state.pos - agent.goal.state.pos, dim=-1)
    actions = torch.zeros(2, 4, 2, requires_grad=True)
    _, rewards, _, _ = env.step(list(actions))
    distance = scenario.world.get_distance(*env.agents)
    smoothed = scenario.agent_collision_penalty * torch.sigmoid(
        (scenario.min_collision_distance - distance) / scenario.collision_width
    )
    return actions, torch.stack(rewards), smoothed


def test_navigation_collision_gradient_is_the_smoothed_penalty_and_pushes_agents_apart():
    actions, rewards, smoothed = navigation_step(collision_coef=1.0, gap=0.03)
    plain_actions, plain_rewards, _ = navigation_step(collision_coef=0.0, gap=0.03)
    assert torch.equal(rewards, plain_rewards)  # the values are VMAS's
    (gradient,) = torch.autograd.grad(rewards[0].sum(), actions, retain_graph=True)
    (plain,) = torch.autograd.grad(plain_rewards[0].sum(), plain_actions)
    (expected,) = torch.autograd.grad(smoothed.sum(), actions)
    # Agent 0's reward gains exactly the smoothed penalty's gradient (closed form through one physics step) ...
    torch.testing.assert_close(gradient - plain, expected)
    # ... which moves agent 0 away from agent 1 (along -x) and agent 1 away from agent 0.
    assert (expected[0, :, 0] < 0).all() and (expected[1, :, 0] > 0).all()
    # Far apart it fades: 5 agent radii away, under 1e-3 of its value near contact.
    far_actions, _, far_smoothed = navigation_step(collision_coef=1.0, gap=0.5)
    (far,) = torch.autograd.grad(far_smoothed.sum(), far_actions)
    assert far.abs().max() < 1e-3 * expected.abs().max()


def test_unknown_task_lists_the_known_ones():
    known = "known tasks: balance_centred, discovery, dispersion, navigation, sampling, transport .* wheel"
    with pytest.raises(ValueError, match=known):
        make_vmas_env("navigaton", num_envs=2)


def test_vmas_own_scenarios_are_built_with_their_defaults_and_the_step_counter():
    """Any VMAS scenario (the gradient probe runs on wheel): VMAS's kwargs, our time limit and truncation."""
    env = make_vmas_env("wheel", num_envs=2, n_agents=2, max_steps=3)
    rollout = env.rollout(3, break_when_any_done=False)
    assert rollout["agents", "observation"].shape[:3] == (2, 3, 2)
    assert rollout["next", "truncated"][:, -1].all() and not rollout["next", "terminated"].any()


def test_task_presets():
    assert task_has_differentiable_reward("transport") and task_has_differentiable_reward("Sampling")
    assert not task_has_differentiable_reward("dispersion") and not task_has_differentiable_reward("discovery")
    assert task_has_differentiable_reward("navigation")
    assert get_vmas_task("sampling").scenario_kwargs() == {"n_agents": 3, "shared_rew": False}
    dispersion = vmas_environment(make_vmas_env("dispersion", num_envs=2, n_agents=3)).scenario
    # The authors' dispersion: one food per agent, VMAS's per-agent rewards and food radius.
    assert len(dispersion.world.landmarks) == 3 and not dispersion.share_reward and dispersion.food_radius == 0.05
    for n_agents, per_target in [(1, 1), (3, 2)]:
        discovery = vmas_environment(make_vmas_env("discovery", num_envs=2, n_agents=n_agents)).scenario
        assert discovery._agents_per_target == per_target and discovery.n_targets == 7 and discovery.shared_reward
    assert isinstance(vmas_environment(make_vmas_env("transport", num_envs=2)).scenario, DifferentiableTransport)
    plain = vmas_environment(make_vmas_env("transport", num_envs=2, differentiable_reward=False)).scenario
    assert type(plain) is VmasTransport


@pytest.mark.parametrize("n_agents", [1, 3])
def test_dispersion_agents_start_apart(n_agents: int):
    """The paper's dispersion starts the agents evenly on a circle of radius 0.05 (VMAS: all at the origin, where a
    shared policy cannot tell them apart): at every reset, full or per env, their first observations differ."""
    env = make_vmas_env("dispersion", num_envs=4, n_agents=n_agents, max_steps=3)
    rollout = env.rollout(7, break_when_any_done=False)  # two per-env resets of every env
    reset_steps = rollout["agents", "observation"][:, [0, 3, 6]]
    positions = reset_steps[..., :2]
    torch.testing.assert_close(positions.norm(dim=-1), torch.full(positions.shape[:-1], 0.05))
    angles = torch.atan2(positions[..., 1], positions[..., 0])
    expected = torch.arange(n_agents) * (2 * torch.pi / n_agents)
    torch.testing.assert_close(torch.remainder(angles - expected, 2 * torch.pi).cos(), torch.ones_like(angles))
    if n_agents > 1:
        assert (reset_steps[..., 0, :] != reset_steps[..., 1, :]).any(-1).all()
    # VMAS's start is one keyword away.
    vmas_start = make_vmas_env("dispersion", num_envs=4, n_agents=n_agents, agent_start_radius=0.0).reset()
    assert (vmas_start["agents", "observation"][..., :2] == 0).all()


def balance_rollout(task: str, actions: torch.Tensor) -> TensorDictBase:
    """VMAS's balance or ``balance_centred`` stepped through ``actions`` ([T, B, 4, 2]) from the same seed."""
    env = make_vmas_env(task, num_envs=actions.shape[1], n_agents=4, seed=1)
    assert isinstance(vmas_environment(env).scenario, CentredRotationBalance) == (task == "balance_centred")
    return scripted_rollout(env, actions)


def test_centred_balance_observes_the_line_rotation_without_the_cut_at_level():
    """``balance_centred`` is VMAS's balance with the last feature, the line's rotation modulo pi, taken in
    [-pi/2, pi/2): equal to VMAS's modulo pi, every other feature and the rewards equal, and continuous where VMAS's
    jumps by about pi as the line tilts across level."""
    torch.manual_seed(0)
    actions = torch.rand(40, NUM_ENVS, 4, 2) * 2 - 1
    centred, plain = balance_rollout("balance_centred", actions), balance_rollout("balance", actions)
    assert torch.equal(centred["next", "agents", "reward"], plain["next", "agents", "reward"])
    ours, theirs = centred["agents", "observation"], plain["agents", "observation"]
    assert torch.equal(ours[..., :-1], theirs[..., :-1])
    rotation, vmas_rotation = ours[..., -1], theirs[..., -1]
    assert (rotation >= -torch.pi / 2).all() and (rotation < torch.pi / 2).all()
    torch.testing.assert_close(torch.remainder(rotation - vmas_rotation + 1, torch.pi) - 1, torch.zeros_like(rotation))
    within_episodes = ~centred["next", "done"][:, :-1, None, 0]  # [B, T - 1, 1]: no reset between t and t + 1
    jumps = (vmas_rotation.diff(dim=1).abs() > 3)[within_episodes.expand(-1, -1, 4)]
    assert jumps.any(), "VMAS's feature crosses its cut in this rollout"
    assert (rotation.diff(dim=1).abs()[within_episodes.expand(-1, -1, 4)] < 0.5).all()


def test_centred_balance_rotation_gradient_is_vmas():
    torch.manual_seed(0)
    actions = torch.rand(3, 4, 4, 2) * 2 - 1
    gradients = []
    for task in ("balance_centred", "balance"):
        env = make_vmas_env(task, num_envs=4, n_agents=4, seed=1, grad_enabled=True)
        td = env.reset()
        first = actions[0].clone().requires_grad_()
        for action in (first, *actions[1:]):
            td["agents", "action"] = action
            td = env.step(td)["next"]
        (gradient,) = torch.autograd.grad(td["agents", "observation"][..., -1].sum(), first)
        gradients.append(gradient)
    assert gradients[0].abs().sum() > 0
    torch.testing.assert_close(*gradients)


def test_sampling_resets_equal_vmas():
    states = []
    for scenario in (DifferentiableSampling, VmasSampling):  # one after the other: VMAS's RNG state is global
        env = vmas.make_env(scenario(), num_envs=32, seed=3, n_agents=3)
        full = (env.scenario.max_pdf.clone(), torch.stack([a.state.pos for a in env.agents]))
        env.scenario.max_pdf = env.scenario.max_pdf.clone()  # VMAS writes it in place
        env.reset_at(2)
        states.append((*full, env.scenario.max_pdf, torch.stack([a.state.pos for a in env.agents])))
    for ours, theirs in zip(*states, strict=True):
        assert torch.equal(ours, theirs)
    # VMAS clamps spawn positions to the world bounds as a side effect of its reward lookup; some did get clamped.
    assert (states[1][1].abs() == env.world.x_semidim).any()
    assert not torch.equal(states[0][0], states[0][2])  # env 2 was redrawn
