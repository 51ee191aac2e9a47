"""Where a SHAC++ window goes at steady state: one window's update and its model cool-down under ``torch.profiler``.

One BenchMARL experiment (``algorithm=shacpp`` on ``--task`` with ``--preset``, evaluation off) runs
``model_train_every`` windows. After the first window is collected, every learned model's cache is filled to its
capacity by storing that window again and again (the arithmetic of a cool-down depends on how many items a cache
holds, not on which), so the last window trains its models as it would once the caches are full. That window's update
(actor steps, value targets, cache writes, cool-down) and BenchMARL's critic loop after it are profiled; the
collection is timed by BenchMARL. The table splits the time by the package's ``record_function`` scopes
(``shac/...``) and lists the operators that take the most time.

Usage (``benchmarks/results/shacpp_profile.md`` was made with the commands at its top)::

    python benchmarks/shacpp_profile.py --preset shacpp_cpu --out benchmarks/results/shacpp_profile.md
    python benchmarks/shacpp_profile.py --preset shacpp_paper --append --out benchmarks/results/shacpp_profile.md
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch
from benchmarl_experiment import FillCaches, ProfileWindow, compose_experiment

# The scopes the package marks, in the order of a window; what the scopes do not cover is BenchMARL's.
SCOPES = {
    "shac/actor_steps": "actor steps (through the world and reward models)",
    "shac/value_targets": "value targets (TD(λ))",
    "shac/new_data_losses": "models' losses on the new windows",
    "shac/cache_writes": "cache writes",
    "shac/cooldown/reward": "cool-down: reward model",
    "shac/reward/loss": "  forward and loss",
    "shac/reward/backward_and_step": "  backward and Adam",
    "shac/cooldown/world": "cool-down: world model",
    "shac/world/loss": "  forward and loss",
    "shac/world/backward_and_step": "  backward and Adam",
}


def profile(args: argparse.Namespace) -> list[str]:
    """Runs the experiment and returns the Markdown lines of its table."""
    every = args.model_train_every
    overrides = [
        "algorithm=shacpp", f"task.n_agents={args.n_agents}", f"experiment={args.preset}",
        f"experiment.max_n_iters={every}", f"algorithm.model_train_every={every}", "experiment.evaluation=false",
        "experiment.loggers=[]", "experiment.render=false", "experiment.create_json=false",
        "experiment.checkpoint_interval=0", f"experiment.save_folder={args.save_folder}", *args.override,
    ]  # fmt: skip
    fill, callback = FillCaches(), ProfileWindow(window=every)
    experiment = compose_experiment(args.task, overrides, [fill, callback])
    experiment.run()
    events = callback.events
    total_ms = callback.wall_s * 1e3
    frames = experiment.config.on_policy_collected_frames_per_batch
    lines = [
        f"## {args.preset}: {args.task} n={args.n_agents}, {frames} frames per window"
        + (f" ({' '.join(args.override)})" if args.override else ""),
        "",
        f"Caches filled before the profiled window: {', '.join(f'{k} {v:,}' for k, v in fill.filled.items())} "
        f"items. Profiled: window {every}'s update and cool-down and BenchMARL's critic loop, "
        f"**{total_ms:,.0f} ms** wall.",
        "",
        "| part | ms | share | calls |",
        "|---|---:|---:|---:|",
    ]
    for scope, label in SCOPES.items():
        if scope in events:
            event = events[scope]
            ms = event.cpu_time_total / 1e3
            lines.append(f"| {label} | {ms:,.0f} | {ms / total_ms:.0%} | {event.count} |")
    top_level = [scope for scope, label in SCOPES.items() if scope in events and not label.startswith(" ")]
    covered = sum(events[scope].cpu_time_total for scope in top_level) / 1e3
    lines.append(f"| BenchMARL's critic loop and the rest | {total_ms - covered:,.0f} | {1 - covered / total_ms:.0%} | |")
    lines += ["", f"Operators by own time (top {args.top}):", "", "| operator | ms | calls |", "|---|---:|---:|"]
    operators = sorted((e for e in events.values() if e.key.startswith("aten::")), key=lambda e: -e.self_cpu_time_total)
    for event in operators[: args.top]:
        lines.append(f"| `{event.key}` | {event.self_cpu_time_total / 1e3:,.0f} | {event.count} |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="shacpp_cpu")
    parser.add_argument("--task", default="vmas/transport")
    parser.add_argument("--n-agents", type=int, default=3)
    parser.add_argument("--model-train-every", type=int, default=10, help="the window profiled is the last of these")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--save-folder", default="/tmp")
    parser.add_argument("--override", nargs="*", default=[], help="more hydra overrides")
    parser.add_argument("--append", action="store_true", help="add a section to --out instead of writing it anew")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    command = f"python benchmarks/shacpp_profile.py {' '.join(sys.argv[1:])}"
    header = [
        "# SHAC++ at steady state: where one window's update and cool-down go", "",
        f"CPU ({platform.machine()}, {torch.get_num_threads()} torch threads), torch {torch.__version__}. "
        "Caches full; the profiled window trains its models (`benchmarks/shacpp_profile.py` explains how). Times are "
        "`torch.profiler` CPU totals of the package's `record_function` scopes; nested rows (indented) are parts of "
        "the row above; share = of the profiled wall time.", "",
    ]  # fmt: skip
    lines = [f"Command: `{command}`", "", *profile(args)]
    text = (args.out.read_text() if args.append else "\n".join(header) + "\n") + "\n".join(lines) + "\n"
    args.out.write_text(text)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
