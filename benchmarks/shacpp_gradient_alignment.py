r"""Do SHAC+'s and SHAC++'s learned gradients point where the simulator's gradient points?

On a task whose reward has an exact gradient (transport with ``approach_coef=0``, i.e. VMAS's own gradient;
sampling), the SHAC actor gradient :math:`g_{sim}` of a window is exact. SHAC+ (learned reward on the simulator's
observations) and SHAC++ (learned world and reward models, the simulator's gradient unused) estimate the same
gradient. For the *same* windows (same states, same reparameterised actions, same critic) this script measures

* ``cos(sim, +)`` and ``cos(sim, ++)``: cosine between :math:`g_{sim}` and the SHAC+ / SHAC++ gradient of the policy
  parameters, per window, mean ± std over the evaluation windows;
* ``|g|/|g_sim|``: the learned gradient's norm relative to the simulator's;
* ``cos(sim_i, sim_j)``: cosine between the simulator gradients of two different windows — how far one window's
  gradient agrees with another's, the scale against which a learned gradient's cosine is read;
* the models' held-out errors on the evaluation windows (world: observation MSE over the window; reward: MSE),
* ``∂ô/∂a``: how the world model's sensitivity of the predicted observations to the actions agrees with the
  simulator's, on a rollout of uniform random actions in the action box: cosine and norm ratio of the Jacobians
  :math:`\partial (\sum_{t, i} \hat o_{t, i, f}) / \partial a_{0..h-1}`, stacked over the features :math:`f`,
  against the simulator's,

as the world, reward and value models train (cool-down epochs over caches filled by the same policy).

Three switches take the simulator's gradient apart:

* ``--open-loop``: the evaluation windows are collected by the policy reading *detached* observations, so the
  simulator's gradient lacks the terms "a later action depends on a later state" — exactly as SHAC++'s, whose
  policy acted on real observations (the authors' splicing, DESIGN §2 step 2);
* ``--no-bootstrap``: all three objectives use a zero critic, leaving the reward path only;
* ``--loop-terms``: each held-out window also gets an open-loop twin (a fresh env of the same seed: the same states
  and actions in value), and a table compares SHAC's exact gradient with its closed-loop terms and without them, and
  SHAC++'s on the twins: how much of SHAC's gradient SHAC++ could reach at best, and how near it gets. (Without
  ``--open-loop``, the main table's SHAC++ gradient is taken on closed-loop windows, whose actions carry the
  simulator's graph through the policy's input: it holds those simulator terms too.)

With ``--train-windows N`` the same measurement follows a training run instead: SHAC++ itself (its window update,
the models' cool-down every 10 windows) trains the policy and the models on ``N`` windows of ``--train-envs`` envs,
and every ``--probe-every`` windows the gradients are compared on fresh held-out windows of the policy as it is then,
with the models as they are then. Does the learned gradient stay aligned as the policy moves away from the data it
started from?

Usage (the committed tables in results/shacpp_gradient_alignment.md were made with these commands)::

    python benchmarks/shacpp_gradient_alignment.py --task transport --scenario approach_coef=0
    python benchmarks/shacpp_gradient_alignment.py --task sampling

e.g. ``--task sampling --open-loop --no-bootstrap`` for the reward path without the closed-loop terms, and
``--task navigation --feature-block lidar=6:18`` for the world model's ∂ô/∂a over the lidar's features alone
(``--cut-block lidar=6:18``: SHAC+ with the simulator's gradient through those features cut, i.e. with only what
SHAC++'s world model gets right where it learns those features' sensitivity to the actions not at all), and
``--task wheel --n-agents 4 --open-loop --train-windows 360 --world-model-steps 300 --lr 3e-3`` for the alignment
along SHAC++'s own training at the BenchMARL algorithm's defaults.

``--trusted-error-ratio k`` adds a table: SHAC++'s gradient with the agent-steps its world model mispredicts cut from
the chain (``algorithm.world_trusted_error_ratio=k``: those whose one-step error exceeds k times the window's median)
beside the uncut one, the share of agent-steps cut and, with ``--cut-block``, how often that block of features changed
over the transition at the cut agent-steps and at the kept ones (navigation's lidar changes where another agent is in
its range: do the cut steps find them?).
"""

from __future__ import annotations

import argparse
import functools
import logging
import statistics
import sys
import time
from collections.abc import Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase, TensorDictSequential
from torchrl.envs.utils import step_mdp

from torchrl_shacpp.collectors import WindowCollector
from torchrl_shacpp.envs import make_vmas_env
from torchrl_shacpp.trainers import CoolDown, LearnedRewardGradient, SimulatorGradient, make_actor_loss, make_learners
from torchrl_shacpp.modules import WORLD_ROLLOUTS

GROUP = "agents"
OBSERVATION, ACTION, REWARD = (GROUP, "observation"), (GROUP, "action"), (GROUP, "reward")
VALUE_TARGET, PREDICTED_REWARD = (GROUP, "value_target"), (GROUP, "predicted_reward")


def scenario_kwarg(text: str) -> tuple[str, float | int]:
    """``"key=value"`` to ``(key, number)``."""
    key, _, value = text.partition("=")
    if not key or not value:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    number = float(value)
    return key, int(number) if number.is_integer() and "." not in value else number


def collect(env, policy, windows: int, window_length: int, graph: str) -> list[TensorDictBase]:
    """``windows`` consecutive windows; all envs reset every 3 windows so that no episode ends inside one."""
    collector = WindowCollector(
        env, policy, window_length=window_length, total_frames=windows * window_length * env.batch_size[0],
        reset_every=3, graph=graph,
    )  # fmt: skip
    collected = list(collector)
    collector.shutdown()
    return collected


class DetachedObservation(TensorDictModuleBase):
    """Cuts the graph between the state and the policy's input: actions depend on the parameters directly only."""

    in_keys = out_keys = [OBSERVATION]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        return tensordict.set(OBSERVATION, tensordict.get(OBSERVATION).detach())


def flat_gradient(output: torch.Tensor, inputs: list[torch.Tensor]) -> torch.Tensor:
    """∂output/∂inputs, flattened into one vector (zeros where an input does not reach the output)."""
    gradients = torch.autograd.grad(output, inputs, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(x)).flatten() for g, x in zip(gradients, inputs)])


def feature_block(text: str) -> tuple[str, slice]:
    """``NAME=START:STOP`` (e.g. ``lidar=4:16``) from the command line: a named block of observation features."""
    name, _, bounds = text.partition("=")
    start, _, stop = bounds.partition(":")
    if not name or not start.isdigit() or not stop.isdigit() or int(start) >= int(stop):
        raise argparse.ArgumentTypeError(f"expected NAME=START:STOP with START < STOP, got {text!r}")
    return name, slice(int(start), int(stop))


def periodic_feature(text: str) -> tuple[int, float]:
    """``"INDEX:PERIOD"`` to ``(index, period)``."""
    index, _, period = text.partition(":")
    try:
        return int(index), float(period)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected INDEX:PERIOD, got {text!r}") from None


def without_gradient(window: TensorDictBase, block: slice) -> TensorDictBase:
    """A shallow copy of ``window`` whose observations and next observations carry no gradient through the features
    ``block``: the reward model and the critic read those features' values but cannot differentiate through them."""
    window = window.copy()
    for key in (OBSERVATION, ("next", *OBSERVATION)):
        observation = window.get(key)
        keep = torch.ones(observation.shape[-1], dtype=torch.bool)
        keep[block] = False
        window.set(key, torch.where(keep, observation, observation.detach()))
    return window


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a, b, dim=0).item()


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def world_sensitivity_agreement(
    env, world_model, window_length: int, blocks: Sequence[slice] = ()
) -> tuple[float, float, list[tuple[float, float]]]:
    """Cosine and norm ratio of the world model's Jacobian ∂(Σ ô_f)/∂a, stacked over the observation features f,
    against the simulator's, on one rollout of uniform random actions (the actor's window module: the one-pass
    prediction from o_0, or the transition model spliced along this rollout); and both over each block of features
    alone."""
    tensordict = env.reset()
    actions, observations, next_observations = [], [], []
    for _ in range(window_length):
        action = env.full_action_spec[ACTION].rand().requires_grad_()  # uniform in the box: never clamped
        observations.append(tensordict[OBSERVATION].detach())
        tensordict = env.step(tensordict.set(ACTION, action))
        actions.append(action)
        next_observations.append(tensordict["next", *OBSERVATION])
        tensordict = step_mdp(tensordict)
    simulated = torch.stack(next_observations, -3)
    window = TensorDict(
        {
            OBSERVATION: torch.stack(observations, -3),
            ACTION: torch.stack(actions, -3),
            ("next", *OBSERVATION): simulated.detach(),
            ("next", "done"): torch.zeros(*simulated.shape[:-2], 1, dtype=torch.bool),
        },
        batch_size=simulated.shape[:-2],
    )
    predicted = world_model(window)["next", *OBSERVATION]

    def jacobian(observation: torch.Tensor) -> torch.Tensor:
        return torch.stack([flat_gradient(observation[..., f].sum(), actions) for f in range(observation.shape[-1])])

    by_simulator, by_model = jacobian(simulated), jacobian(predicted)

    def agreement(simulator: torch.Tensor, model: torch.Tensor) -> tuple[float, float]:
        return cosine(simulator.flatten(), model.flatten()), (model.norm() / simulator.norm()).item()

    return *agreement(by_simulator, by_model), [agreement(by_simulator[block], by_model[block]) for block in blocks]


def held_out_errors(windows: list[TensorDictBase], world_loss, reward_model) -> tuple[float, float]:
    """The world model's loss (one-pass: the window's observation MSE from o_0; spliced: the one-step MSE from each
    real observation) and the reward model's MSE on ``windows``."""
    world, reward = [], []
    with torch.no_grad():
        for window in windows:
            window = window.detach()
            world.append(world_loss(window)["loss_world"].item())
            scored = reward_model(window.select(*reward_model.in_keys))
            reward.append((scored[PREDICTED_REWARD] - window["next", *REWARD]).pow(2).mean().item())
    return statistics.mean(world), statistics.mean(reward)


def main(args: argparse.Namespace) -> None:
    # The trainings along --train-windows; with --epochs the cumulative stages set each model's passes instead.
    schedule = {key: value for key, value in [("model_epochs", args.model_epochs), ("model_steps", args.model_steps)]
                if value is not None}  # fmt: skip
    if schedule and not args.train_windows:
        raise SystemExit("--model-epochs and --model-steps set the trainings along --train-windows; with --epochs the "
                         "models train on the stages given there: drop them, or add --train-windows.")  # fmt: skip
    logging.getLogger("torchrl").setLevel(logging.WARNING)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    env_kwargs = dict(n_agents=args.n_agents, differentiable_reward=True, **dict(args.scenario))
    data_envs = args.train_envs if args.train_windows else args.num_envs
    data_env = make_vmas_env(args.task, num_envs=data_envs, seed=args.seed, **env_kwargs)
    held_out_env = functools.partial(
        make_vmas_env, args.task, num_envs=args.num_envs, seed=args.seed + 1, grad_enabled=True, **env_kwargs
    )
    eval_env = held_out_env()
    learners = make_learners(
        data_env, "shacpp", window_length=args.window, gamma=args.gamma, actor_lr=args.lr, model_lr=args.lr,
        policy_dropout=0.1, cache_size=args.cache_size,
        world_cache_size=args.world_cache_size if args.world_rollout == "one_pass" else args.cache_size,
        world_bins=args.world_bins, reward_bins=args.reward_bins,
        reward_uniform_share=args.reward_uniform_share, value_bins=args.value_bins,
        model_minibatch_size=args.minibatch, world_minibatch_size=args.world_minibatch, **schedule,
        world_rollout=args.world_rollout, reward_uses_next_observation=args.reward_next_observation,
        world_model_steps=args.world_model_steps, world_model_max_steps=args.world_model_max_steps,
        actor_world_gradient=args.world_gradient, world_periodic_features=args.world_periodic or None,
    )  # fmt: skip
    policy, value_loss = learners.policy, learners.value_loss
    world_model, reward_model = learners.world_model, learners.reward_model
    shacpp_update = learners.update.groups[GROUP]
    models, world_source = shacpp_update.models, shacpp_update.source
    critic_params = value_loss.bootstrap_params
    if args.no_bootstrap:
        critic_params = critic_params.detach().clone().zero_()  # a critic of all-zero parameters outputs 0
    shac, shacp = (
        make_actor_loss(data_env, policy, value_loss, source, gamma=args.gamma, value_params=critic_params)
        for source in (SimulatorGradient(), LearnedRewardGradient(world_source.reward))
    )
    shacpp = make_actor_loss(
        data_env, policy, value_loss, world_source, gamma=args.gamma, value_params=critic_params,
        world_gradient=args.world_gradient,
    )
    parameters = [p for p in policy.parameters() if p.requires_grad]

    open_loop_policy = TensorDictSequential(DetachedObservation(), policy)
    eval_policy = open_loop_policy if args.open_loop else policy

    def eval_data() -> tuple[list[TensorDictBase], list[TensorDictBase] | None]:
        """The held-out windows, and with ``--loop-terms`` their open-loop twins."""
        if not args.loop_terms:
            return collect(eval_env, eval_policy, args.eval_windows, args.window, graph="simulator"), None
        twins = []
        for acting in (policy, open_loop_policy):
            # A fresh env of the same seed and the same torch seed: the same resets, action noise and dropout masks.
            env = held_out_env()
            with torch.random.fork_rng():
                torch.manual_seed(args.seed + 1)
                twins.append(collect(env, acting, args.eval_windows, args.window, graph="simulator"))
        for closed, opened in zip(*twins):
            if not torch.equal(closed[ACTION], opened[ACTION]):
                raise RuntimeError("the open-loop twin of a window took other actions: the twins are not paired")
        return twins[0], twins[1]

    start = time.perf_counter()

    def measure(label: str, eval_windows: list[TensorDictBase], open_twins: list[TensorDictBase] | None) -> None:
        """Appends the alignment row of ``eval_windows`` (and its block, cut and loop rows) under ``label``."""
        # The critic trains with the models, so the simulator's gradient (through its bootstrap) changes too.
        simulator_gradients = [flat_gradient(shac(window)["loss_actor"], parameters) for window in eval_windows]
        across_windows = [
            cosine(simulator_gradients[i], simulator_gradients[j])
            for i in range(len(eval_windows)) for j in range(i + 1, len(eval_windows))
        ]  # fmt: skip
        plus, plusplus, plus_norm, plusplus_norm, plus_cut = [], [], [], [], []
        trusted, cut_share, cut_changed, kept_changed = [], [], [], []
        for window, g_sim in zip(eval_windows, simulator_gradients):
            g_plus = flat_gradient(shacp(window)["loss_actor"], parameters)
            if args.cut_block:
                g_cut = flat_gradient(shacp(without_gradient(window, args.cut_block[1]))["loss_actor"], parameters)
                plus_cut.append(cosine(g_sim, g_cut))
            g_plusplus = flat_gradient(shacpp(window)["loss_actor"], parameters)
            plus.append(cosine(g_sim, g_plus))
            plusplus.append(cosine(g_sim, g_plusplus))
            if args.trusted_error_ratio:
                spliced = world_source.world_model.module
                spliced.trusted_error_ratio = args.trusted_error_ratio
                trusted.append(cosine(g_sim, flat_gradient(shacpp(window)["loss_actor"], parameters)))
                steps = window.select(OBSERVATION, ACTION, ("next", *OBSERVATION)).detach()
                observation, next_observation = steps[OBSERVATION], steps["next", *OBSERVATION]
                kept = spliced.trusted_steps(observation, steps[ACTION], next_observation).squeeze(-1)
                spliced.trusted_error_ratio = None
                cut_share.append(1 - kept.float().mean().item())
                if args.cut_block:
                    block = args.cut_block[1]
                    changed = (next_observation[..., block] != observation[..., block]).any(-1)
                    cut_changed.append(changed[~kept].float().mean().item())
                    kept_changed.append(changed[kept].float().mean().item())
            plus_norm.append((g_plus.norm() / g_sim.norm()).item())
            plusplus_norm.append((g_plusplus.norm() / g_sim.norm()).item())
        if open_twins is not None:
            open_loop, open_plusplus, closed_plusplus = [], [], []
            for twin, g_sim in zip(open_twins, simulator_gradients):
                g_open = flat_gradient(shac(twin)["loss_actor"], parameters)
                g_plusplus = flat_gradient(shacpp(twin)["loss_actor"], parameters)
                open_loop.append(cosine(g_sim, g_open))
                open_plusplus.append(cosine(g_open, g_plusplus))
                closed_plusplus.append(cosine(g_sim, g_plusplus))
            loop_rows.append(
                f"| {label} | {mean_std(open_loop)} | {mean_std(open_plusplus)} | {mean_std(closed_plusplus)} |"
            )
        world_error, reward_error = held_out_errors(eval_windows, world_source.world.loss, reward_model)
        sensitivity_cos, sensitivity_ratio, by_block = world_sensitivity_agreement(
            eval_env, world_model, args.window, [block for _, block in args.feature_block]
        )
        block_rows.append(f"| {label} | " + " | ".join(f"{cos:.2f} / {ratio:.2f}" for cos, ratio in by_block) + " |")
        cut = mean_std(plus_cut) if plus_cut else "–"
        cut_rows.append(f"| {label} | {mean_std(plus)} | {cut} | {mean_std(plusplus)} |")
        if trusted:
            changes = "– | –"
            if cut_changed:
                changes = f"{statistics.mean(cut_changed):.3f} | {statistics.mean(kept_changed):.3f}"
            share = statistics.mean(cut_share)
            trusted_rows.append(f"| {label} | {mean_std(plusplus)} | {mean_std(trusted)} | {share:.3f} | {changes} |")
        rows.append(
            f"| {label} | {mean_std(across_windows)} | {mean_std(plus)} | {mean_std(plusplus)} | "
            f"{statistics.mean(plus_norm):.2f} | "
            f"{statistics.mean(plusplus_norm):.2f} | {world_error:.2e} | {reward_error:.2e} | {sensitivity_cos:.2f} | "
            f"{sensitivity_ratio:.2f} |"
        )
        print(rows[-1], f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)

    rows, block_rows, cut_rows, loop_rows, trusted_rows = [], [], [], [], []
    if args.train_windows:
        # SHAC++ itself trains the policy and the models (its window update, cool-down every 10 windows); every
        # --probe-every windows the same measurement runs on fresh windows of the policy as it is then.
        collector = WindowCollector(
            data_env, policy, window_length=args.window, total_frames=args.train_windows * args.window * data_envs,
            reset_every=None, graph="policy",
        )  # fmt: skip
        rewards = []
        for index, window in enumerate(collector, start=1):
            learners.update(window)
            rewards.append(window["next", *REWARD].mean().item())
            if index % args.probe_every == 0:
                measure(f"{index} ({index * window.numel() // 1000}k) | {statistics.mean(rewards):.4f}", *eval_data())
                rewards = []
        collector.shutdown()
    else:
        for window in collect(data_env, policy, args.data_windows, args.window, graph="none"):
            window[VALUE_TARGET] = value_loss.value_targets(window)
            for model in models:
                model.store(window)
        eval_windows, open_twins = eval_data()
        print(f"data: {args.data_windows} windows of {args.num_envs} envs x {args.window} steps "
              f"({time.perf_counter() - start:.0f} s with the evaluation windows)", file=sys.stderr)  # fmt: skip
        trained_epochs = 0
        for epochs in args.epochs:
            if epochs > trained_epochs:
                cooldown = CoolDown(every=1, epochs=epochs - trained_epochs)
                for model in models:
                    model.fit(cooldown)
                trained_epochs = epochs
            measure(str(epochs), eval_windows, open_twins)

    setting = [f"{args.world_rollout} world model"] + [f"{key}={value}" for key, value in args.scenario]
    setting += [f"{args.reward_bins} reward bins"] * (args.reward_bins != 9)
    setting += [f"reward uniform share {args.reward_uniform_share}"] * (args.reward_uniform_share > 0)
    setting += ["open loop"] * args.open_loop + ["no bootstrap"] * args.no_bootstrap
    setting += ["reward model reads (o, a, o')"] * args.reward_next_observation
    setting += [f"world model on {args.world_model_steps} minibatches"] * (args.world_model_steps is not None)
    setting += [f"{args.model_epochs} passes per training"] * (args.model_epochs is not None)
    setting += [f"reward model and critic on {args.model_steps} minibatches"] * (args.model_steps is not None)
    setting += [f"world minibatch {args.world_minibatch}"] * (args.world_minibatch is not None)
    setting += [f"world model on at most {args.world_model_max_steps} minibatches"] * (
        args.world_model_max_steps is not None
    )
    setting += [f"SHAC++ trains on {args.train_windows} windows of {data_envs} envs"] * (args.train_windows > 0)
    print(f"### {args.task} n={args.n_agents}{' (' + ', '.join(setting) + ')' if setting else ''}\n")
    # A training row's label is two cells: the windows (frames) so far, and the mean reward of the windows since the
    # last row.
    stage, stage_rule = ("training windows (frames) | mean training reward", "---:|---:") if args.train_windows else (
        "model epochs", "---:"
    )
    print(f"| {stage} | cos(sim_i, sim_j) | cos(sim, +) | cos(sim, ++) | \\|g_+\\|/\\|g_sim\\| "
          "| \\|g_++\\|/\\|g_sim\\| | world MSE (held out) | reward MSE (held out) | ∂ô/∂a cos "
          "| ∂ô/∂a norm ratio |")  # fmt: skip
    print(f"|{stage_rule}|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    if args.feature_block:
        names = [f"{name} [{block.start}:{block.stop}]" for name, block in args.feature_block]
        print("\n∂ô/∂a cos / norm ratio by block of observation features:\n")
        print(f"| {stage} | " + " | ".join(names) + " |")
        print(f"|{stage_rule}|" + "---:|" * len(names))
        print("\n".join(block_rows))
    if args.cut_block:
        name, block = args.cut_block
        print(f"\nSHAC+ with the simulator's gradient through {name} [{block.start}:{block.stop}] cut:\n")
        print(f"| {stage} | cos(sim, +) | cos(sim, + without {name}'s gradient) | cos(sim, ++) |")
        print(f"|{stage_rule}|---:|---:|---:|")
        print("\n".join(cut_rows))
    if args.trusted_error_ratio:
        block = f"{args.cut_block[0]} changed" if args.cut_block else "block changed"
        print(f"\nSHAC++ with the agent-steps whose one-step error exceeds {args.trusted_error_ratio:g} times the "
              "window's median cut from its world model's chain:\n")  # fmt: skip
        print(f"| {stage} | cos(sim, ++) | cos(sim, ++ cut) | share cut | {block}, cut steps | {block}, kept steps |")
        print(f"|{stage_rule}|---:|---:|---:|---:|---:|")
        print("\n".join(trusted_rows))
    if args.loop_terms:
        print("\nThe closed-loop terms: SHAC's exact gradient with them (sim) and without them (sim open loop, on the"
              " same windows' open-loop twins), and SHAC++'s on the twins (it has none):\n")  # fmt: skip
        print(f"| {stage} | cos(sim, sim open loop) | cos(sim open loop, ++) | cos(sim, ++) |")
        print(f"|{stage_rule}|---:|---:|---:|")
        print("\n".join(loop_rows))


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="transport", help="a task with a differentiable reward: transport, sampling")
    parser.add_argument("--n-agents", type=int, default=3)
    parser.add_argument("--scenario", type=scenario_kwarg, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--feature-block", type=feature_block, action="append", default=[], metavar="NAME=START:STOP",
        help="also report the world model's ∂ô/∂a cosine over these observation features alone (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--cut-block", type=feature_block, metavar="NAME=START:STOP",
        help="also report SHAC+'s alignment with the simulator's gradient through these features cut",
    )  # fmt: skip
    # --loop-terms compares the closed-loop windows with their open-loop twins, so it cannot take --open-loop.
    loop = parser.add_mutually_exclusive_group()
    loop.add_argument("--open-loop", action="store_true", help="the policy reads detached observations")
    loop.add_argument(
        "--loop-terms", action="store_true",
        help="also compare the exact gradient with and without its closed-loop terms, on twin windows",
    )  # fmt: skip
    parser.add_argument(
        "--trusted-error-ratio", type=float, metavar="k",
        help="also SHAC++'s gradient with the agent-steps its world model mispredicts (k x the median error) cut",
    )  # fmt: skip
    parser.add_argument("--no-bootstrap", action="store_true", help="a zero critic in all three objectives")
    parser.add_argument("--reward-next-observation", action="store_true", help="the reward model reads (o, a, o')")
    parser.add_argument("--world-rollout", choices=WORLD_ROLLOUTS, default="spliced", help="SHAC++'s world model")
    parser.add_argument(
        "--world-periodic", type=periodic_feature, action="append", default=[], metavar="INDEX:PERIOD",
        help="an angle feature the spliced model reads as cos/sin and learns across its cut (balance: 15:3.14159...)",
    )  # fmt: skip
    parser.add_argument(
        "--world-gradient", type=float, default=1.0,
        help="SHAC++'s weight on the gradient through its world model, in training and in the measured gradient",
    )  # fmt: skip
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--data-windows", type=int, default=150, help="windows of training data for the models")
    parser.add_argument("--eval-windows", type=int, default=8, help="held-out windows the gradients are compared on")
    parser.add_argument("--epochs", type=int, nargs="+", default=[0, 1, 3, 10, 30], help="cumulative model epochs")
    parser.add_argument("--cache-size", type=int, default=30_000, help="reward and value cache items")
    parser.add_argument(
        "--world-cache-size", type=int, default=3_000,
        help="windows in the one-pass world cache (the spliced model caches --cache-size transitions)",
    )  # fmt: skip
    parser.add_argument("--world-bins", type=int, default=25)
    parser.add_argument("--reward-bins", type=int, default=9)
    parser.add_argument("--reward-uniform-share", type=float, default=0.0, help="reward cache outside its bins")
    parser.add_argument("--value-bins", type=int, default=9)
    parser.add_argument("--minibatch", type=int, default=1000)
    parser.add_argument("--world-model-steps", type=int, help="minibatches per training of the spliced world model")
    parser.add_argument(
        "--world-minibatch", type=int, help="the world model's minibatch (one-pass: windows), if not --minibatch"
    )
    parser.add_argument("--model-epochs", type=int, help="passes per training along --train-windows (paper: 10)")
    parser.add_argument(
        "--model-steps", type=int,
        help="minibatches per training of the reward model and critic along --train-windows, not --model-epochs",
    )  # fmt: skip
    parser.add_argument(
        "--world-model-max-steps", type=int, help="at most this many minibatches per training of the one-pass model"
    )
    parser.add_argument(
        "--train-windows", type=int, default=0,
        help="instead of --data-windows and --epochs: SHAC++ trains the policy and the models on this many windows",
    )  # fmt: skip
    parser.add_argument("--train-envs", type=int, default=8, help="envs per training window (BenchMARL's CPU preset)")
    parser.add_argument("--probe-every", type=int, default=40, help="training windows between two measurements")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    return parser


if __name__ == "__main__":
    main(parser().parse_args())
