"""One Markdown table, and optionally a plot of the learning curves, from the marl-eval JSON files of BenchMARL runs
(e.g. a ``-m algorithm=shacpp,mappo`` multirun).

    python -m torchrl_shacpp.benchmarl.table multirun/2026-11-24/12-00-00 [--output table.md] [--plot curves.png]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarl.eval_results import load_and_merge_json_dicts


def load_results(folder: Path) -> dict[str, Any]:
    """The merged marl-eval dict of the JSON files under ``folder`` (as BenchMARL's
    ``get_raw_dict_from_multirun_folder``), with an error that names the cause and the file: a missing folder, no JSON
    (BenchMARL writes it at each evaluation), a file that is not JSON or not a marl-eval file."""
    if not folder.exists():
        raise SystemExit(f"{folder} not found.")
    files = sorted(path for path in folder.rglob("*.json") if "wandb" not in path.name) if folder.is_dir() else [folder]
    if not files:
        runs = len(list(folder.rglob("config.pkl")))
        if runs:
            raise SystemExit(
                f"No marl-eval JSON files under {folder}, in {runs} BenchMARL run(s): BenchMARL writes them at each "
                "evaluation, so run with experiment.create_json=true and experiment.evaluation=true."
            )
        raise SystemExit(
            f"No BenchMARL runs and no marl-eval JSON files under {folder}: point the table at the outputs/ or "
            "multirun/ folder of runs made with experiment.create_json=true and experiment.evaluation=true."
        )
    for file in files:
        try:
            data = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise SystemExit(f"{file} is not valid JSON ({error}): a truncated file, or one still being written.")
        if not _is_marl_eval(data):
            raise SystemExit(
                f"{file} is not a marl-eval file of BenchMARL (env / task / algorithm / seed / step_<n> with a "
                "step_count and returns): move it out of the folder, or point the table at the run folders."
            )
    return load_and_merge_json_dicts([str(file) for file in files])


def _is_marl_eval(data: Any) -> bool:
    """Whether ``data`` has marl-eval's nesting: env / task / algorithm / seed, each seed with ``step_<n>`` entries
    holding a step count and the returns."""
    seeds = [data]
    for _ in range(4):  # env -> task -> algorithm -> seed -> the seed's entries
        if not all(isinstance(level, Mapping) for level in seeds):
            return False
        seeds = [value for level in seeds for value in level.values()]
    if not all(isinstance(seed, Mapping) for seed in seeds):
        return False
    steps = [value for seed in seeds for key, value in seed.items() if key.startswith("step_")]
    return bool(steps) and all(isinstance(step, Mapping) and {"step_count", "return"} <= step.keys() for step in steps)


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
    parser.add_argument("folder", type=Path, help="a folder of BenchMARL runs (searched recursively), or a JSON file")
    parser.add_argument("--output", type=Path, help="also write the table to this file")
    parser.add_argument("--plot", type=Path, help="also plot the learning curves to this image")
    args = parser.parse_args()
    results = load_results(args.folder)
    table = markdown(summarise(results))
    print(table, end="")
    if args.output:
        args.output.write_text(table)
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
