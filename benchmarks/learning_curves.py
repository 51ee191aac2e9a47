"""Summarise training runs (the ``curve.csv`` files of the example scripts) as one Markdown table and one PNG.

    python benchmarks/learning_curves.py --title "SHAC, CPU" --out benchmarks/results/learning_shac \\
        transport_n1=runs/shac_transport_n1 transport_n3=runs/shac_transport_n3 sampling_n3=runs/shac_sampling_n3
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_curve(run: Path) -> list[dict[str, float]]:
    with open(run / "curve.csv") as file:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(file)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    parser.add_argument("--title", required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for summary.md, curves.png and the CSVs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    runs = dict(run.split("=", 1) for run in args.runs)

    lines = [
        f"# {args.title}",
        "",
        "Deterministic evaluation return (mean over evaluation envs of the first episode's return, mean over agents).",
        "",
        "| run | windows | frames | minutes | first eval | best eval | last eval | skipped actor steps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    fig, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 3.6), squeeze=False)
    for ax, (name, folder) in zip(axes[0], runs.items()):
        rows = read_curve(Path(folder))
        shutil.copy(Path(folder) / "curve.csv", args.out / f"{name}.csv")
        returns = [row["eval_return"] for row in rows]
        last = rows[-1]
        lines.append(
            f"| {name} | {last['windows']:.0f} | {last['frames']:,.0f} | {last['seconds'] / 60:.1f} | "
            f"{returns[0]:.3f} | {max(returns):.3f} | {returns[-1]:.3f} | {last['skipped_actor_steps']:.0f} |"
        )
        ax.plot([row["frames"] for row in rows], returns)
        ax.set_title(name)
        ax.set_xlabel("frames (env steps)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("eval return")
    fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out / "curves.png", dpi=110)
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
