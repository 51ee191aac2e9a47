r"""Which observation features can SHAC++'s one-step transition model learn, and with which action sensitivity?

Fits :class:`~torchrl_shacpp.modules.TransitionWorldModel` (the spliced world model's one step, the package's sizes)
by teacher forcing on transitions of uniformly random actions of a VMAS task, and reports per named block of
observation features:

* ``R²``: one minus the held-out mean squared error of the predicted change :math:`\hat o' - o` over the variance of
  the real change :math:`o' - o` (0: no better than predicting the mean change; 1: exact);
* ``one-step cos`` (``--one-step``): the cosine of the model's one-step action Jacobian with VMAS's, over the block's
  features, on 3,000 held-out env steps (``action_jacobian_identifiability.py``'s data and measure, whose regression
  from the observation bounds it from above);
* ``cos / ratio``: the cosine and norm ratio of the spliced model's action Jacobian
  :math:`\partial (\sum_{t, i} \hat o_{t, i, f}) / \partial a` against VMAS's, over the block's features, on a
  32-step rollout (the gradient-alignment probe's measure, ``shacpp_gradient_alignment.py --feature-block``).

Before the fit it prints, per block, how the change is spread: the share of its entries that are nonzero and the
share of its total square carried by the largest 1% of its nonzero entries (1%: evenly spread; near 100%: a few
jumps).

Variants, each against the plain fit:

* ``--normalize-inputs``: the network reads observations standardised by the training data's per-feature mean and
  standard deviation (it still predicts the change of the raw observation);
* ``--normalize-loss``: each feature's squared error is divided by the mean square of its real change (plus a
  hundredth of the features' mean), so rarely changing features weigh as much as the kinematics;
* ``--centralised-mlp WIDTH``: instead of the package's model, a 3-hidden-layer SiLU MLP of that width on every
  agent's observation and action at once, predicting every agent's change;
* ``--sensor-gain DISPLACEMENT SENSORS``: the sensors' change as a learned, state-dependent linear response to the
  agent's own displacement, :math:`\Delta\hat o_S = b(o) + G(o)\,(\hat o'_D - o_D)`, with the displacement
  :math:`\hat o'_D - o_D` the package's model's own prediction (``DISPLACEMENT``, e.g. ``0:2``, the positions) and
  :math:`b, G` a per-agent MLP of the observation (``SENSORS``, e.g. ``4:24``, every feature the simulator computes
  from the positions); so the sensors' action Jacobian is :math:`G(o)\,\partial \hat o'_D / \partial a`, and
  :math:`G` is fitted by a regression on the displacement, not found inside an unstructured product;
* ``--gain-ignores FEATURES`` (with ``--sensor-gain``): :math:`b` and :math:`G` do not read these features (zeroed,
  e.g. ``2:4``, the velocity). Where :math:`b` reads the velocity it can fit the sensors' drift along the field,
  :math:`\nabla f \cdot v\,\Delta t`, itself, and :math:`G` is then identified by the action's part of the
  displacement alone; without the velocity only :math:`G(o)\,\Delta p` can fit that drift;
* ``--loss l1`` (or ``smooth_l1``, TorchRL's ``distance_loss``, the world-model losses' ``loss_function``): the
  absolute error fits the conditional median of the change, not its mean, so rare jumps (a lidar ray starting to hit
  an agent, a sampled cell zeroed) stop dominating the fit;
* ``--trim q``: trimmed least squares; per feature, the largest fraction ``q`` of a minibatch's squared errors is
  left out of the loss, so that the fit follows the smooth part of the change (the part the exact gradient sees)
  and not its rare jumps, which it then cannot chase; unlike the absolute error it keeps the squared error's scale
  for the small changes;
* ``--tukey k``: Tukey's biweight, a redescending loss, :math:`\rho(r) = \frac{c^2}{6}(1 - (1 - (r/c)^2)^3)` for
  :math:`|r| < c` and :math:`c^2/6` beyond, with :math:`c = k` times each feature's median absolute nonzero change in
  the training data: residuals beyond :math:`c` (the jumps) give no gradient at all, whatever their share, while the
  small changes are fitted as by the squared error; the first 300 steps use the squared error, since the biweight
  cannot pull a prediction that starts beyond :math:`c`;
* ``--jacobian-penalty λ``: adds :math:`\lambda\,\mathbb E\,\|u^\top \partial\Delta_\theta/\partial o\|^2` (``u``
  standard normal, one vector-Jacobian product a minibatch), which keeps the one-step state Jacobians that the spliced
  window chains near the identity where the data do not ask otherwise.

Usage (the table in results/transition_model_fit.md)::

    python benchmarks/transition_model_fit.py --task navigation \
        --block pos=0:2 --block vel=2:4 --block goal=4:6 --block lidar=6:18 [--normalize-inputs] [--normalize-loss]
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torchrl.objectives.utils import distance_loss

from torchrl_shacpp.envs import make_vmas_env
from torchrl_shacpp.modules import PeriodicFeatures, TransitionWorldModel, spliced_world_model

sys.path.insert(0, str(Path(__file__).parent))
from action_jacobian_identifiability import action_jacobian, feature_slice, one_step_jacobians  # noqa: E402
from shacpp_gradient_alignment import (  # noqa: E402
    cosine,
    feature_block,
    periodic_feature,
    world_sensitivity_agreement,
)

OBSERVATION, ACTION = ("agents", "observation"), ("agents", "action")
# the biweight has no gradient beyond its scale: it starts from the squared error's fit, not from the initialisation
TUKEY_WARM_UP = 300


class StandardisedInputs(nn.Module):
    r"""A transition model reading standardised observations: :math:`o + \Delta_\theta((o - m) / s, a)`."""

    def __init__(self, transition: TransitionWorldModel, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.transition = transition
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, observation: Tensor, action: Tensor) -> Tensor:
        standardised = (observation - self.mean) / self.std
        return observation + self.transition(standardised, action) - standardised


class CentralisedMLP(nn.Module):
    r""":math:`o + \Delta_\theta(o, a)` with :math:`\Delta_\theta` an MLP on all agents' ``[o; a]`` concatenated."""

    def __init__(self, n_agents: int, obs_dim: int, action_dim: int, width: int) -> None:
        super().__init__()
        layers, features = [], n_agents * (obs_dim + action_dim)
        for _ in range(3):
            layers += [nn.Linear(features, width), nn.SiLU()]
            features = width
        self.network = nn.Sequential(*layers, nn.Linear(width, n_agents * obs_dim))

    def forward(self, observation: Tensor, action: Tensor) -> Tensor:
        change = self.network(torch.cat([observation, action], -1).flatten(-2))
        return observation + change.unflatten(-1, observation.shape[-2:])


class SensorGain(nn.Module):
    r""":math:`\hat o' = T(o, a)` on every feature but the sensors ``S``, and
    :math:`\hat o'_S = o_S + b(o) + G(o)\,(T(o, a)_D - o_D)` on them: a sensor moves, to first order, linearly with
    the agent's displacement ``D``, with a gain :math:`G` and an offset :math:`b` (the expected jumps) that depend on
    the observation only."""

    def __init__(
        self,
        transition: nn.Module,
        obs_dim: int,
        displacement: slice,
        sensors: slice,
        ignored: slice | None = None,
        width: int = 256,
    ):
        super().__init__()
        self.transition, self.displacement, self.sensors = transition, displacement, sensors
        read = torch.ones(obs_dim)
        if ignored is not None:
            read[ignored] = 0.0
        self.register_buffer("read", read)
        self.shape = (sensors.stop - sensors.start, displacement.stop - displacement.start)
        self.network = nn.Sequential(
            nn.Linear(obs_dim, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
            nn.Linear(width, self.shape[0] * (self.shape[1] + 1)),
        )  # fmt: skip

    def forward(self, observation: Tensor, action: Tensor) -> Tensor:
        predicted = self.transition(observation, action)
        offset, gain = self.network(observation * self.read).unflatten(-1, (self.shape[0], self.shape[1] + 1)).split(
            [1, self.shape[1]], -1
        )
        step = (predicted[..., self.displacement] - observation[..., self.displacement]).unsqueeze(-1)
        if self.training:  # the sensors' error fits b and G, not the displacement the kinematics' error fits
            step = step.detach()
        sensors = observation[..., self.sensors] + offset.squeeze(-1) + (gain @ step).squeeze(-1)
        return torch.cat([predicted[..., : self.sensors.start], sensors, predicted[..., self.sensors.stop :]], -1)


def trimmed_squared_error(predicted: Tensor, target: Tensor, weight: Tensor, trim: float) -> Tensor:
    r"""The mean weighted squared error over the entries that remain, per feature, once the largest ``trim`` share of
    that feature's errors in the minibatch is left out (least trimmed squares; ``trim=0``: the plain mean)."""
    error = (predicted - target).pow(2).flatten(0, -2)
    kept = error.shape[0] - int(trim * error.shape[0])
    return (error.sort(0).values[:kept] * weight).mean()


def biweight_loss(predicted: Tensor, target: Tensor, weight: Tensor, scale: Tensor) -> Tensor:
    r"""The mean weighted Tukey biweight :math:`\frac{c^2}{6}(1 - (1 - \min(1, (r/c)^2))^3)` of the residuals
    :math:`r`, with ``scale`` the per-feature :math:`c`."""
    share = ((predicted - target) / scale).pow(2).clamp(max=1)
    return (scale.pow(2) / 6 * (1 - (1 - share).pow(3)) * weight).mean()


def state_jacobian_penalty(observation: Tensor, change: Tensor) -> Tensor:
    r""":math:`\mathbb E\,\|u^\top \partial\Delta/\partial o\|^2` for one standard normal :math:`u` (Hutchinson's
    estimator of the squared Frobenius norm of the change's state Jacobian), differentiable in the model."""
    probe = torch.randn_like(change)
    (vjp,) = torch.autograd.grad(change, observation, probe, create_graph=True)
    return vjp.pow(2).sum(-1).mean()


def one_step_agreement(transition: nn.Module, probe: tuple[Tensor, ...], blocks: list[slice]) -> list[float]:
    """Per block, the cosine of the model's one-step action Jacobian with VMAS's on the ``probe`` env steps
    (``one_step_jacobians``: observations, actions, next observations, exact Jacobians)."""
    observation, action, _, exact = probe
    action = action.clone().requires_grad_()
    model = action_jacobian(transition(observation, action), action)
    return [cosine(exact[..., block, :].flatten(), model[..., block, :].flatten()) for block in blocks]


def attention_kernels(*, double_backward: bool) -> AbstractContextManager:
    """The math attention kernel where the penalty differentiates attention twice (CPU's flash kernel has no double
    backward); torch's own choice otherwise."""
    return sdpa_kernel(SDPBackend.MATH) if double_backward else nullcontext()


def random_transitions(task: str, count: int, n_agents: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """``count`` shuffled transitions ``(o, a, o')`` of uniformly random actions (64 envs, 100-step episodes)."""
    env = make_vmas_env(task, num_envs=64, n_agents=n_agents, seed=seed)
    rollouts, collected = [], 0
    with torch.no_grad():
        while collected < count:
            rollouts.append(env.rollout(100, break_when_any_done=False).reshape(-1))
            collected += rollouts[-1].numel()
    data = torch.cat(rollouts)[torch.randperm(collected)[:count]]
    return data[OBSERVATION], data[ACTION], data["next", *OBSERVATION]


def main(args: argparse.Namespace) -> None:
    if (args.trim > 0) + (args.tukey > 0) + (args.loss != "l2") > 1:
        raise SystemExit("--trim, --tukey and --loss are alternative losses: choose one")
    if args.gain_ignores and not args.sensor_gain:
        raise SystemExit("--gain-ignores names what the sensor gain does not read: add --sensor-gain")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    count = 2 * args.transitions
    observation, action, next_observation = random_transitions(args.task, count, args.n_agents, args.seed)
    periodic = PeriodicFeatures(args.periodic)
    # The angle features' targets across the cut: the change itself, not the jump (as TransitionModelLoss's).
    next_observation = observation + periodic.wrap(next_observation - observation)
    train, held_out = slice(0, args.transitions), slice(args.transitions, None)
    change = next_observation - observation
    n_agents, obs_dim, action_dim = *observation.shape[-2:], action.shape[-1]
    if args.centralised_mlp:
        transition = CentralisedMLP(n_agents, obs_dim, action_dim, args.centralised_mlp)
    else:
        transition = TransitionWorldModel(obs_dim, action_dim, periodic=periodic)
    if args.sensor_gain:
        transition = SensorGain(transition, obs_dim, *args.sensor_gain, ignored=args.gain_ignores)
    if args.normalize_inputs:
        features = observation[train].flatten(0, -2)
        transition = StandardisedInputs(transition, features.mean(0), features.std(0) + 1e-6)
    mean_square = change[train].flatten(0, -2).pow(2).mean(0)
    weight = 1 / (mean_square + 1e-2 * mean_square.mean()) if args.normalize_loss else torch.ones_like(mean_square)
    if args.tukey:
        nonzero = change[train].flatten(0, -2).abs()
        scale = args.tukey * torch.nanmedian(nonzero.where(nonzero > 0, torch.nan), 0).values.nan_to_num(1.0)
    optimizer = torch.optim.Adam(transition.parameters(), lr=args.lr)
    eval_env = make_vmas_env(args.task, num_envs=64, n_agents=args.n_agents, seed=args.seed + 1, grad_enabled=True)
    blocks = [block for _, block in args.block]
    probe = one_step_jacobians(args.task, 3000, args.n_agents, args.seed + 1) if args.one_step else None

    print(f"### {args.task} n={args.n_agents}, {args.transitions} random-action transitions, minibatch "
          f"{args.minibatch}, lr {args.lr}" + ", inputs standardised" * args.normalize_inputs
          + ", loss normalised per feature" * args.normalize_loss
          + f", centralised MLP of width {args.centralised_mlp}" * bool(args.centralised_mlp)
          + f", {args.loss} loss" * (args.loss != "l2")
          + ", sensors through a displacement gain" * bool(args.sensor_gain)
          + f", the gain blind to features {args.gain_ignores}" * bool(args.gain_ignores)
          + f", Tukey's biweight at {args.tukey:g} median changes" * bool(args.tukey)
          + f", the largest {args.trim:.0%} of each feature's errors trimmed" * (args.trim > 0)
          + f", state-Jacobian penalty {args.jacobian_penalty:g}" * (args.jacobian_penalty > 0)
          + f", periodic features {[list(pair) for pair in args.periodic]}" * bool(args.periodic) + "\n")  # fmt: skip
    for name, block in args.block:
        entries = change[train][..., block].flatten()
        square = entries[entries != 0].pow(2).sort(descending=True).values
        top = square[: max(1, len(square) // 100)].sum() / square.sum()
        print(f"- {name}: {(entries != 0).float().mean():.1%} of the change's entries nonzero, "
              f"{top:.0%} of its square in the largest 1% of those")  # fmt: skip
    print()
    one_step_header = "".join(f" {name} one-step cos |" for name, _ in args.block) * args.one_step
    print("| steps | " + " | ".join(f"{name} R² | {name} ∂ô/∂a cos / ratio" for name, _ in args.block) + " |"
          + one_step_header)
    print("|---:|" + "---:|---:|" * len(blocks) + "---:|" * len(blocks) * args.one_step)
    trained, start = 0, time.perf_counter()
    for steps in args.steps:
        for step in range(trained, steps):
            index = torch.randint(0, args.transitions, (args.minibatch,))
            inputs = observation[train][index].requires_grad_(args.jacobian_penalty > 0)
            with attention_kernels(double_backward=args.jacobian_penalty > 0):
                predicted = transition(inputs, action[train][index])
            target = next_observation[train][index]
            if args.trim > 0:
                loss = trimmed_squared_error(predicted, target, weight, args.trim)
            elif args.tukey and step >= TUKEY_WARM_UP:
                loss = biweight_loss(predicted, target, weight, scale)
            else:
                loss = (distance_loss(predicted, target, args.loss) * weight).mean()
            if args.jacobian_penalty > 0:
                loss = loss + args.jacobian_penalty * state_jacobian_penalty(inputs, predicted - inputs)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        trained = steps
        with torch.no_grad():
            predicted = transition(observation[held_out], action[held_out]) - observation[held_out]
            error = (predicted - change[held_out]).flatten(0, -2).pow(2).mean(0)
            variance = change[held_out].flatten(0, -2).var(0)
        transition.eval()
        *_, agreement = world_sensitivity_agreement(eval_env, spliced_world_model(transition), 32, blocks)
        cells = [
            f"{1 - (error[block].sum() / variance[block].sum()).item():.2f} | {cos:.2f} / {ratio:.2f}"
            for block, (cos, ratio) in zip(blocks, agreement)
        ]
        if probe is not None:
            cells += [f"{cos:.2f}" for cos in one_step_agreement(transition, probe, blocks)]
        transition.train()
        print(f"| {steps} | " + " | ".join(cells) + " |", flush=True)
        print(f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="navigation", help="a VMAS task of torchrl_shacpp.envs.make_vmas_env")
    parser.add_argument("--n-agents", type=int, default=3)
    parser.add_argument("--block", type=feature_block, action="append", required=True, metavar="NAME=START:STOP")
    parser.add_argument("--transitions", type=int, default=30_000, help="training transitions (as many held out)")
    parser.add_argument("--steps", type=int, nargs="+", default=[300, 1000, 3000], help="cumulative Adam steps")
    parser.add_argument("--minibatch", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--normalize-inputs", action="store_true", help="standardised observations in")
    parser.add_argument("--normalize-loss", action="store_true", help="each feature's error over its change's scale")
    parser.add_argument("--centralised-mlp", type=int, default=0, metavar="WIDTH", help="an MLP on all agents")
    parser.add_argument("--sensor-gain", nargs=2, type=feature_slice,
                        metavar=("DISPLACEMENT", "SENSORS"), help="sensors' change = b(o) + G(o) x displacement")
    parser.add_argument("--gain-ignores", type=feature_slice, metavar="FEATURES", help="features b, G do not read")
    parser.add_argument("--loss", choices=("l2", "l1", "smooth_l1"), default="l2", help="distance_loss's function")
    parser.add_argument("--trim", type=float, default=0.0, metavar="q", help="share of squared errors left out")
    parser.add_argument("--tukey", type=float, default=0.0, metavar="k", help="biweight at k median changes")
    parser.add_argument("--jacobian-penalty", type=float, default=0.0, metavar="λ", help="on ∂Δ/∂o (0: off)")
    parser.add_argument("--one-step", action="store_true", help="also the one-step ∂ô/∂a's cosine with VMAS's")
    parser.add_argument(
        "--periodic", type=periodic_feature, action="append", default=[], metavar="INDEX:PERIOD",
        help="an angle feature the model reads as cos/sin and learns across its cut (e.g. 15:3.141592653589793)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    return parser


if __name__ == "__main__":
    main(parser().parse_args())
