"""What SHAC++'s world model costs per training step and per actor pass: the paper's one-pass model against the
spliced transition model (the default), each with the axis attention and with the dense fused attention.

**Training step** (forward + MSE + backward + Adam) on one minibatch of ``--minibatch`` cached items: for the one-pass
model, windows of ``h`` actions (predicting ``h + 1`` observations from the first); for the transition model,
transitions (one step). Both run the paper's schedule of minibatches per cool-down, so the ratio per step is the
ratio per cool-down. **Actor pass** (forward + backward to the actions) over a window of ``B`` envs x ``h`` steps:
the one-pass model predicts the window from its first observation; the spliced window chains the transition model's
Jacobians along the real rollout (``h`` sequential calls). All configurations are timed interleaved, in one process,
``--repeats`` times after a warm-up; the table gives medians and the ratio to the paper's path.

Usage (``benchmarks/results/model_step_cost.md`` was made with the command at its top)::

    OMP_NUM_THREADS=1 python benchmarks/model_step_cost.py --compile --out benchmarks/results/model_step_cost.md
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from torchrl_shacpp.modules import AxisAttentionWorldModel, TransitionWorldModel, spliced_world_model

OBS_DIM, ACTION_DIM = 16, 2


def training_step(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], target: torch.Tensor) -> Callable[[], None]:
    """One Adam step of ``model`` regressing ``target`` from ``inputs``."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        loss = (model(*inputs) - target).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def one_pass_actor(model: AxisAttentionWorldModel, envs: int, steps: int, n_agents: int) -> Callable[[], None]:
    """The one-pass model's prediction of a window from its first observation, differentiated to the actions."""
    first = torch.randn(envs, n_agents, OBS_DIM)
    actions = torch.randn(envs, steps, n_agents, ACTION_DIM, requires_grad=True)
    return lambda: model(first, actions).sum().backward()


def spliced_actor(model: TransitionWorldModel, envs: int, steps: int, n_agents: int) -> Callable[[], None]:
    """The spliced window (the transition model's Jacobians chained along a real rollout), differentiated to the
    actions."""
    window = spliced_world_model(model, observation_key="observation", action_key="action")
    observation = torch.randn(envs, steps, n_agents, OBS_DIM)
    inputs = {
        "observation": observation, "action": torch.randn(envs, steps, n_agents, ACTION_DIM, requires_grad=True),
        ("next", "observation"): observation + 0.01, ("next", "done"): torch.zeros(envs, steps, 1, dtype=torch.bool),
    }  # fmt: skip
    module = window.module
    return lambda: sum(t.sum() for t in module(*(inputs[key] for key in window.in_keys))).backward()


ONE_PASS, SPLICED = "one-pass (paper)", "spliced transition (default)"


def configurations(args: argparse.Namespace) -> dict[tuple[str, str, str, str], Callable[[], None]]:
    """``(part, size, world model, attention) -> one timed call``."""
    h, n, b = args.horizon, args.n_agents, args.minibatch
    runs = {}
    for attention, dense in (("axis", False), ("dense fused", True)):
        one_pass = AxisAttentionWorldModel(OBS_DIM, ACTION_DIM, h, dense_attention=dense)
        transition = TransitionWorldModel(OBS_DIM, ACTION_DIM, dense_attention=dense)
        size = f"minibatch of {b}"
        runs["train", size, ONE_PASS, attention] = training_step(
            one_pass, (torch.randn(b, n, OBS_DIM), torch.randn(b, h, n, ACTION_DIM)), torch.randn(b, h + 1, n, OBS_DIM)
        )
        runs["train", size, SPLICED, attention] = training_step(
            transition, (torch.randn(b, n, OBS_DIM), torch.randn(b, n, ACTION_DIM)), torch.randn(b, n, OBS_DIM)
        )
        if dense and args.compile:  # the default model, compiled (inductor); its compilation is in the warm-up
            runs["train", size, SPLICED, "dense fused, torch.compile"] = training_step(
                torch.compile(TransitionWorldModel(OBS_DIM, ACTION_DIM)),
                (torch.randn(b, n, OBS_DIM), torch.randn(b, n, ACTION_DIM)),
                torch.randn(b, n, OBS_DIM),
            )
        for envs in args.window_envs:
            size = f"window of {envs} envs x {h} steps"
            runs["actor", size, ONE_PASS, attention] = one_pass_actor(one_pass, envs, h, n)
            runs["actor", size, SPLICED, attention] = spliced_actor(transition, envs, h, n)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minibatch", type=int, default=1000)
    parser.add_argument("--horizon", type=int, default=32)
    parser.add_argument("--n-agents", type=int, default=3)
    parser.add_argument("--window-envs", type=int, nargs="+", default=[8, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time the default model's step compiled")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    runs = configurations(args)
    times: dict[tuple[str, str, str, str], list[float]] = {key: [] for key in runs}
    for repeat in range(args.repeats + 1):
        for key, run in runs.items():
            start = time.perf_counter()
            run()
            if repeat:  # the first round warms up
                times[key].append(time.perf_counter() - start)
    lines = [
        "# SHAC++'s world model: cost per training step and per actor pass", "",
        f"Command: `OMP_NUM_THREADS={torch.get_num_threads()} python benchmarks/model_step_cost.py "
        f"{' '.join(sys.argv[1:])}`", "",
        f"CPU ({platform.machine()}, {torch.get_num_threads()} torch thread(s)), torch {torch.__version__}, float32; "
        f"{args.n_agents} agents, {OBS_DIM} observation and {ACTION_DIM} action features per agent, h = {args.horizon}, "
        "the paper's model sizes (3 layers, hidden 64, feed-forward 128, 1 head). A training step's minibatch holds "
        "windows for the one-pass model and transitions for the transition model (the paper's schedule runs the same "
        f"number of minibatches for either). Median of {args.repeats} interleaved repetitions after a warm-up; "
        "speed-up = the paper's path (one-pass, axis attention) of the same part and size / this one.", "",
        "| part | size | world model | attention | ms | speed-up |",
        "|---|---|---|---|---:|---:|",
    ]  # fmt: skip
    medians = {key: statistics.median(values) for key, values in times.items()}
    for (part, size, model, attention), median in medians.items():
        reference = medians[part, size, ONE_PASS, "axis"]
        lines.append(f"| {part} | {size} | {model} | {attention} | {median * 1e3:,.1f} | {reference / median:.1f}x |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
