r"""Can SHAC++'s transition model learn transport's contact, and does it take contacts in its data to?

Trained along SHAC++'s own run on transport n=3, the spliced world model's response to an agent moving deeper into the
package is a few ten-thousandths of VMAS's (``results/transport_goal_face/``: VMAS's contact spring changes the
agent's next velocity by about 9 per unit of penetration and the package's by about 0.18), while its action Jacobian is
VMAS's. Contacts are 1-5% of the agent-steps of SHAC++'s windows. This script fits the same
:class:`~torchrl_shacpp.modules.TransitionWorldModel` (its defaults, Adam, the L2 loss on the next observation) on
transitions of VMAS's transport drawn with a given share of agents touching the package, and measures on held-out
touching agent-steps the model's response against VMAS's (``transport_goal_face.vmas_transitions``: the pushing
agent moved along :math:`-n`, into the face it touches) and the loss on touching and free agent-steps.

The transitions: the package at a random place in the arena with its goal at a random place; each agent, with
probability ``--contact-share``, on a random face of the package at a random point along it, from 0.01 inside the
contact distance to 0.005 outside it, else anywhere in the arena; agents' velocities uniform in [-1, 1], the
package's in [-0.1, 0.1]; actions uniform in the action box. Each share is fitted from the same initial weights on as
many transitions and minibatches.

``--scenario contact_observation=true`` fits on observations that hold each agent's gap to the package
(``DifferentiableTransport``'s option), where the contact's force is a function of one feature;
``--scenario penetration_observation=true`` on observations that hold its overlap with the package along the face's
normal, the force itself up to a factor. ``--touching-weight w`` weights the touching agent-steps' squared errors by
``w`` (the free ones' by 1; the loss is divided by the weights' sum), one row per weight.

Example (``results/transport_contact_fit.md``)::

    python benchmarks/transport_contact_fit.py --contact-share 0.02 0.2 0.5 --transitions 20000 --steps 3000
    python benchmarks/transport_contact_fit.py --contact-share 0.02 0.5 --scenario contact_observation=true
    python benchmarks/transport_contact_fit.py --contact-share 0.02 --touching-weight 1 10 \
        --scenario penetration_observation=true
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
import vmas

sys.path.insert(0, str(Path(__file__).parent))
from transport_contacts import PACKAGE_FROM_AGENT, observed_contacts  # noqa: E402
from transport_goal_face import cosine, median, unit, vmas_stream_kept, vmas_transitions  # noqa: E402

from torchrl_shacpp.envs import DifferentiableTransport  # noqa: E402
from torchrl_shacpp.modules import TransitionWorldModel  # noqa: E402

#: The arena's half-width where packages, goals and free agents are drawn (VMAS transport's world is unbounded; its
#: resets spread the entities over about this).
ARENA = 1.0


def transport_transitions(
    config: dict, count: int, contact_share: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``count`` transitions ``(o, a, o')``, ``[count, n, F]``, ``[count, n, d]``, ``[count, n, F]``, drawn as the
    module's docstring says."""
    n = config["n_agents"]
    env = vmas.make_env(DifferentiableTransport(), num_envs=count, continuous_actions=True, seed=0, **config)
    scenario = env.scenario
    package = scenario.packages[0]
    half_side = 0.5 * min(package.shape.length, package.shape.width)
    centre = (torch.rand(count, 2, generator=generator) * 2 - 1) * ARENA
    package.set_pos(centre, batch_index=None)
    package.set_vel((torch.rand(count, 2, generator=generator) * 2 - 1) * 0.1, batch_index=None)
    package.goal.set_pos((torch.rand(count, 2, generator=generator) * 2 - 1) * ARENA, batch_index=None)
    contact = half_side + scenario.agent_radius
    for agent in scenario.world.agents:
        # A point on a random face: the face's normal (±x or ±y), at a random place along it.
        axis = torch.randint(0, 2, (count,), generator=generator)
        side = torch.randint(0, 2, (count,), generator=generator) * 2 - 1
        along = (torch.rand(count, generator=generator) * 2 - 1) * half_side
        gap = contact + torch.rand(count, generator=generator) * 0.015 - 0.01
        offset = torch.stack([torch.where(axis == 0, side * gap, along), torch.where(axis == 1, side * gap, along)], -1)
        touching = torch.rand(count, generator=generator) < contact_share
        free = (torch.rand(count, 2, generator=generator) * 2 - 1) * ARENA
        agent.set_pos(torch.where(touching.unsqueeze(-1), centre + offset, free), batch_index=None)
        agent.set_vel(torch.rand(count, 2, generator=generator) * 2 - 1, batch_index=None)
    observation = torch.stack([scenario.observation(agent) for agent in scenario.world.agents], 1)
    action = torch.rand(count, n, 2, generator=generator) * 2 - 1
    next_observation = torch.stack(env.step(list(action.unbind(1)))[0], 1)
    return observation, action, next_observation


def touching_faces(
    observation: torch.Tensor, half_side: float, agent_radius: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, n]``: whether each agent touches the package, and ``[N, n, 2]`` the direction into the face it touches."""
    _, touching, _, _ = observed_contacts(observation, half_side, agent_radius, 0.0)
    agent_from_package = -observation[..., PACKAGE_FROM_AGENT]
    return touching, unit(agent_from_package.clamp(-half_side, half_side) - agent_from_package)


def fit(
    model: TransitionWorldModel, data, steps: int, minibatch: int, lr: float, generator: torch.Generator,
    weight: torch.Tensor | None = None,
) -> None:
    """Adam on the L2 loss of the predicted next observation, ``steps`` minibatches of ``minibatch`` transitions;
    each agent-step's squared error weighted by ``weight`` (``[N, n]``) where given."""
    observation, action, next_observation = data
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        index = torch.randint(0, len(observation), (minibatch,), generator=generator)
        error = (model(observation[index], action[index]) - next_observation[index]).pow(2).mean(-1)
        loss = error.mean() if weight is None else (error * weight[index]).sum() / weight[index].sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def contact_response(model, config: dict, held_out, half_side: float, agent_radius: float) -> dict[str, float]:
    """On the held-out transitions: the model's press response against VMAS's at the touching agent-steps (median
    cosine, norm ratio, and both norms of the agent's and the package's next velocity), and its loss on touching and
    on free agent-steps."""
    observation, action, next_observation = held_out
    touching, into = touching_faces(observation, half_side, agent_radius)
    env_index, agent = touching.nonzero().unbind(1)
    with torch.enable_grad(), vmas_stream_kept():
        responses = vmas_transitions(
            config, model, observation[env_index], action[env_index], agent, into[env_index, agent]
        )
    exact, learned = responses["exact_press"], responses["model_press"]
    with torch.no_grad():
        error = (model(observation, action) - next_observation).pow(2).mean(-1)
    return {
        "press_cos": median(cosine(learned, exact)),
        "press_ratio": median(learned.norm(dim=-1) / exact.norm(dim=-1).clamp_min(1e-30)),
        "agent_exact": median(exact[:, 0:2].norm(dim=-1)), "agent_model": median(learned[:, 0:2].norm(dim=-1)),
        "package_exact": median(exact[:, 2:4].norm(dim=-1)), "package_model": median(learned[:, 2:4].norm(dim=-1)),
        "loss_touching": error[touching].mean().item(), "loss_free": error[~touching].mean().item(),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contact-share", type=float, nargs="+", default=[0.02, 0.2, 0.5])
    parser.add_argument("--transitions", type=int, default=20000)
    parser.add_argument("--held-out", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--minibatch", type=int, default=512)
    parser.add_argument("--lr", type=float, default=3e-3, help="SHAC++'s model_lr")
    parser.add_argument("--n-agents", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--touching-weight", type=float, nargs="+", default=[1.0],
        help="weights of the touching agent-steps' squared errors in the loss (the free ones' 1), one row each",
    )  # fmt: skip
    parser.add_argument(
        "--scenario", nargs="*", default=[], metavar="KEY=true",
        help="DifferentiableTransport's observation options, e.g. contact_observation=true",
    )  # fmt: skip
    args = parser.parse_args()
    options = dict(option.split("=", 1) for option in args.scenario)
    config = {"n_agents": args.n_agents, **{key: value.lower() == "true" for key, value in options.items()}}
    torch.manual_seed(args.seed)
    held_out_generator = torch.Generator().manual_seed(args.seed + 1)
    held_out = transport_transitions(config, args.held_out, 0.5, held_out_generator)
    probe_env = vmas.make_env(DifferentiableTransport(), num_envs=1, **config)
    package = probe_env.scenario.packages[0]
    half_side, agent_radius = 0.5 * min(package.shape.length, package.shape.width), probe_env.scenario.agent_radius
    initial = TransitionWorldModel(held_out[0].shape[-1], held_out[1].shape[-1])
    columns = ["press_cos", "press_ratio", "agent_exact", "agent_model", "package_exact", "package_model",
               "loss_touching", "loss_free"]  # fmt: skip
    print(f"{args.transitions} transitions, {args.steps} minibatches of {args.minibatch}, lr {args.lr}, "
          f"held out {args.held_out} (half touching), seed {args.seed}, scenario {config}\n")  # fmt: skip
    print("| contact share | touching weight | " + " | ".join(columns) + " |\n|---|---|" + "---|" * len(columns))
    for share in args.contact_share:
        data = transport_transitions(config, args.transitions, share, torch.Generator().manual_seed(args.seed))
        touching = touching_faces(data[0], half_side, agent_radius)[0]
        for touching_weight in args.touching_weight:
            generator = torch.Generator().manual_seed(args.seed)
            model = copy.deepcopy(initial)
            fit(model, data, args.steps, args.minibatch, args.lr, generator, 1 + (touching_weight - 1) * touching)
            row = contact_response(model, config, held_out, half_side, agent_radius)
            print(f"| {share:g} | {touching_weight:g} | " + " | ".join(f"{row[c]:.3g}" for c in columns) + " |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
