"""One Markdown table, and optionally a plot of the learning curves, from the marl-eval JSON files of BenchMARL runs
(e.g. a ``-m algorithm=shacpp,mappo`` multirun).

    python -m torchrl_shacpp.benchmarl.table multirun/2026-11-24/12-00-00 [--output table.md] [--plot curves.png]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from benchmarl.eval_results import get_raw_dict_from_multirun_folder


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def summarise(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (environment/task, algorithm) of a merged marl-eval dict.

    Columns: the seeds, the evaluation return at the last evaluation and the best evaluation return (each the
    mean over evaluation episodes; mean ± std over seeds), and the frames of the last evaluation (mean over seeds).
    """
    rows = []
    for (task, algorithm), seeds in sorted(curves(results).items()):
        rows.append(
            {
                "task": task,
                "algorithm": algorithm,
                "seeds": len(seeds),
                "final return": _mean_std([returns[-1] for _, returns in seeds]),
                "best return": _mean_std([max(returns) for _, returns in seeds]),
                "frames": int(statistics.fmean(frames[-1] for frames, _ in seeds)),
            }
        )
    return rows


def curves(results: dict[str, Any]) -> dict[tuple[str, str], list[tuple[list[int], list[float]]]]:
    """``(env/task, algorithm) -> [(frames, evaluation returns) per seed]`` of a merged marl-eval dict."""
    lines = {}
    for env, tasks in results.items():
        for task, algorithms in tasks.items():
            for algorithm, seeds in algorithms.items():
                for seed in seeds.values():
                    steps = sorted((key for key in seed if key.startswith("step_")), key=lambda k: int(k[5:]))
                    frames = [seed[step]["step_count"] for step in steps]
                    returns = [statistics.fmean(seed[step]["return"]) for step in steps]
                    lines.setdefault((f"{env}/{task}", algorithm), []).append((frames, returns))
    return lines


def plot(results: dict[str, Any], path: Path) -> None:
    """Evaluation return against frames, one panel per task, one colour per algorithm, one line per seed."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = curves(results)
    tasks = sorted({task for task, _ in lines})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
    colours = {}
    for (task, algorithm), seeds in sorted(lines.items()):
        ax = axes[0, tasks.index(task)]
        colour = colours.setdefault(algorithm, f"C{len(colours)}")
        for index, (frames, returns) in enumerate(seeds):
            ax.plot(frames, returns, color=colour, label=algorithm if index == 0 else None)
        ax.set_title(task)
        ax.set_xlabel("frames")
        ax.set_ylabel("evaluation return")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(rows: list[dict[str, Any]]) -> str:
    """``rows`` as a Markdown table."""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row[key]) for key in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a folder holding BenchMARL runs (searched recursively)")
    parser.add_argument("--output", type=Path, help="also write the table to this file")
    parser.add_argument("--plot", type=Path, help="also plot the learning curves to this image")
    args = parser.parse_args()
    results = get_raw_dict_from_multirun_folder(str(args.folder))
    if not results:
        raise SystemExit(f"No marl-eval JSON files under {args.folder} (run with experiment.create_json=true).")
    table = markdown(summarise(results))
    print(table, end="")
    if args.output:
        args.output.write_text(table)
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
