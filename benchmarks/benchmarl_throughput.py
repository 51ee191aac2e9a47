"""End-to-end training throughput of BenchMARL runs: frames per second of ``algorithm=shacpp`` against MAPPO.

Each run (an experiment preset, an algorithm and overrides: ``--runs``, or every ``--presets`` with every
``--algorithms``) runs ``python -m benchmarl.run`` for ``--iters`` iterations on ``vmas/transport`` with
``--n-agents`` agents, evaluation off, in a fresh subprocess, one after the other in one invocation, so that the
ratios compare runs made on the same machine state. ``--steady-state`` fills the SHAC family's caches after the first
window (``benchmarl_experiment.FillCaches``). Throughput = frames / the sum of BenchMARL's own
``timers/iteration_time`` (collection + training) over the iterations after the first (warm-up). SHAC++ trains its
models every ``model_train_every`` windows (paper: 10), so ``--iters`` should cover at least one cool-down.

Usage (each results/benchmarl_throughput*.md was made with the command written at its top)::

    python benchmarks/benchmarl_throughput.py --iters 21 --steady-state --baseline base_experiment::mappo \
        --runs base_experiment::mappo shacpp_cpu::shacpp shacpp_cpu::shacpp::algorithm.model_steps=10
"""

from __future__ import annotations

import argparse
import csv
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from benchmarl_experiment import FillCaches, compose_experiment


def run(spec: str, args: argparse.Namespace) -> dict[str, float]:
    """One BenchMARL run, ``PRESET::ALGORITHM[::OVERRIDE...]``; returns frames per second and the mean collection /
    training time per iteration."""
    preset, algorithm, *overrides = spec.split("::")
    with tempfile.TemporaryDirectory() as folder:
        command = [
            sys.executable, "-m", "benchmarl.run", f"algorithm={algorithm}", "task=vmas/transport",
            f"task.n_agents={args.n_agents}", f"experiment={preset}", f"experiment.max_n_iters={args.iters}",
            "experiment.evaluation=false", "experiment.loggers=[csv]", "experiment.render=false",
            "experiment.create_json=false", *args.override, *overrides,
        ]  # fmt: skip
        if args.steady_state:  # the same run in this script's worker, which fills the caches after window 1
            command = [sys.executable, str(Path(__file__).resolve()), "--worker", *command[3:]]
        subprocess.run(command, cwd=folder, check=True, capture_output=True, text=True)
        scalars = {name: _read_scalar(Path(folder), name) for name in ("iteration_time", "collection_time", "training_time")}
        frames = _read_scalar(Path(folder), "current_frames", prefix="counters")
        # SHAC-family timers: the actor step (every iteration) and the cool-down (logged only when the models train).
        actor = _read_scalar(Path(folder), "actor_time")
        models = _read_scalar(Path(folder), "model_training_time")
    iterations = len(scalars["iteration_time"]) - 1  # the first iteration is a warm-up
    measured = slice(1, None)
    return {
        "frames_per_iteration": frames[0],
        "fps": sum(frames[measured]) / sum(scalars["iteration_time"][measured]),
        "collection_s": _mean(scalars["collection_time"][measured]),
        "actor_s": _mean(actor[measured]) if actor else 0.0,
        "models_s": sum(models) / iterations,  # no cool-down falls in the warm-up iteration
        "training_s": _mean(scalars["training_time"][measured]),
        "iteration_s": _mean(scalars["iteration_time"][measured]),
    }


def _read_scalar(folder: Path, name: str, prefix: str = "timers") -> list[float]:
    """A BenchMARL csv scalar's values; empty if the run did not log it."""
    paths = list(folder.rglob(f"scalars/{prefix}_{name}.csv"))
    if not paths:
        return []
    with open(paths[0]) as file:
        return [float(row[1]) for row in csv.reader(file)]


def machine(overrides: list[str]) -> str:
    """The device the runs train on, in words."""
    if any(override.endswith("=cuda") or "=cuda:" in override for override in overrides):
        return f"GPU ({torch.cuda.get_device_name()}, {torch.get_num_threads()} torch threads on the host)"
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} torch threads)"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["base_experiment", "shacpp_paper"], help="experiment presets")
    parser.add_argument("--algorithms", nargs="+", default=["shacpp", "mappo"])
    parser.add_argument("--iters", type=int, default=21, help="iterations per run; the first is not timed")
    parser.add_argument("--n-agents", type=int, default=3)
    parser.add_argument("--override", nargs="*", default=[], help="extra hydra overrides for every run")
    parser.add_argument(
        "--runs", nargs="+", metavar="PRESET::ALGORITHM[::OVERRIDE...]",
        help="the runs, instead of every preset with every algorithm, e.g. shacpp_cpu::shacpp::algorithm.model_steps=10",
    )  # fmt: skip
    parser.add_argument("--baseline", help="the run (as in --runs) the ratio column divides by; default: each "
                        "preset's mappo run")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "benchmarl_throughput.md")
    parser.add_argument(
        "--steady-state", action="store_true",
        help="fill the SHAC family's caches after the first window (benchmarl_experiment.FillCaches), so that every "
        "timed window costs what it costs with full caches",
    )  # fmt: skip
    parser.add_argument("--worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        task = next(override.removeprefix("task=") for override in args.worker if override.startswith("task="))
        overrides = [override for override in args.worker if not override.startswith("task=")]
        compose_experiment(task, overrides, [FillCaches()]).run()
        return

    lines = [
        "# BenchMARL end-to-end throughput: SHAC++ vs MAPPO",
        "",
        f"Command: `python benchmarks/benchmarl_throughput.py {' '.join(sys.argv[1:])}`",
        "",
        f"{machine(args.override)}, torch {torch.__version__}; "
        f"vmas/transport with {args.n_agents} agents, {args.iters} iterations per run (the first untimed), evaluation "
        "off; times are means per timed iteration. fps = frames / Σ BenchMARL "
        f"iteration time.{' Caches filled after the first window (steady state).' if args.steady_state else ''} The SHAC family's window update (actor step, value targets, cache writes, model cool-down) "
        "runs in BenchMARL's after-collection callback: inside the iteration time, outside BenchMARL's collection and "
        "training timers, timed by its own (actor step, cool-down).",
        "",
        "| run | frames / iteration | iteration (s) | collection (s) | actor step (s) "
        "| model cool-down (s, amortised) | BenchMARL training loop (s) | frames / s | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    specs = args.runs or [f"{preset}::{algorithm}" for preset in args.presets for algorithm in args.algorithms]
    results = {}
    for spec in specs:  # in order, so that the runs of one preset follow each other
        results[spec] = run(spec, args)
        print(spec, results[spec], flush=True)
    for spec, result in results.items():
        baseline = results.get(args.baseline or f"{spec.split('::')[0]}::mappo")
        ratio = result["fps"] / baseline["fps"] if baseline else float("nan")
        lines.append(
            f"| `{spec}` | {result['frames_per_iteration']:.0f} | {result['iteration_s']:.3g} "
            f"| {result['collection_s']:.3g} | {result['actor_s']:.3g} | {result['models_s']:.3g} "
            f"| {result['training_s']:.3g} | {result['fps']:.0f} | {ratio:.2f}× |"
        )
    lines += ["", f"ratio = frames/s over `{args.baseline or 'PRESET::mappo'}`'s (same run of this script)."]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
