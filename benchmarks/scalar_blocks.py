"""A BenchMARL run's logged scalars, averaged over blocks of frames: what the collections and the models did between
two evaluations, as a Markdown table.

BenchMARL's CSV logger writes one ``scalars/<name>.csv`` per scalar, rows ``iteration,value``; a scalar logged only at
some iterations (a model's ``loss_<model>`` at its trainings) is averaged over the iterations that have it. The frames
of an iteration come from the run's ``.hydra/config.yaml`` (``experiment.on_policy_collected_frames_per_batch``), or
from ``--frames-per-batch``.

    python benchmarks/scalar_blocks.py runs/nav_s3 --block 5120 --scalars collection_agents_info_agent_collisions \\
        train_agents_new_data_loss_reward train_agents_loss_reward
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from pathlib import Path

import yaml


def frames_per_batch(run: Path) -> int:
    """The frames each iteration of the BenchMARL run under ``run`` collects, from its hydra config."""
    config = run / ".hydra" / "config.yaml"
    if not config.exists():
        raise SystemExit(f"{config} is missing: pass --frames-per-batch.")
    return int(yaml.safe_load(config.read_text())["experiment"]["on_policy_collected_frames_per_batch"])


def scalar_rows(run: Path, name: str) -> list[tuple[int, float]]:
    """The ``(iteration, value)`` rows of scalar ``name`` of the one BenchMARL run under ``run``."""
    paths = sorted(run.glob(f"**/scalars/{name}.csv"))
    if len(paths) != 1:
        raise SystemExit(f"{run} holds {len(paths)} files scalars/{name}.csv; name one run's folder.")
    with open(paths[0], newline="") as file:
        return [(int(row[0]), float(row[1])) for row in csv.reader(file) if row]


def block_means(rows: list[tuple[int, float]], frames: int, block: int) -> dict[int, float]:
    """The mean of the finite values logged in each block of ``block`` frames (iteration i collects the frames
    ``i * frames`` to ``(i + 1) * frames``), by the block's first frame."""
    values: dict[int, list[float]] = defaultdict(list)
    for iteration, value in rows:
        if math.isfinite(value):
            values[iteration * frames // block * block].append(value)
    return {start: sum(block_values) / len(block_values) for start, block_values in values.items()}


def table(run: Path, scalars: list[str], block: int, frames: int) -> list[str]:
    """The Markdown lines of ``run``'s table: one row per block, one column per scalar."""
    means = [block_means(scalar_rows(run, name), frames, block) for name in scalars]
    starts = sorted(set().union(*means))
    lines = [f"| frames | {' | '.join(scalars)} |", "|---:|" + "---:|" * len(scalars)]
    for start in starts:
        cells = (f"{column[start]:.4g}" if start in column else "–" for column in means)
        lines.append(f"| {start}-{start + block} | {' | '.join(cells)} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="one BenchMARL run's output folder each")
    parser.add_argument("--scalars", nargs="+", required=True, help="scalar names, as the CSV files are named")
    parser.add_argument("--block", type=int, default=5120, help="frames per block (default 5,120)")
    parser.add_argument("--frames-per-batch", type=int, help="frames per iteration, if the run has no hydra config")
    args = parser.parse_args()
    for run in args.runs:
        frames = args.frames_per_batch or frames_per_batch(run)
        print(f"\n{run}\n", *table(run, args.scalars, args.block, frames), sep="\n")


if __name__ == "__main__":
    main()
