"""One Markdown table from the marl-eval JSON files of BenchMARL runs (e.g. a ``-m algorithm=shacpp,mappo`` multirun).

    python -m torchrl_shacpp.benchmarl.table multirun/2026-11-24/12-00-00 [--output table.md]
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
    """One row per (environment, task, algorithm) of a merged marl-eval dict.

    Columns: the seeds, the evaluation return at the last evaluation and the best evaluation return (each the
    mean over evaluation episodes; mean ± std over seeds), and the frames of the last evaluation (mean over seeds).
    """
    rows = []
    for env, tasks in results.items():
        for task, algorithms in tasks.items():
            for algorithm, seeds in algorithms.items():
                final, best, frames = [], [], []
                for seed in seeds.values():
                    steps = sorted((key for key in seed if key.startswith("step_")), key=lambda k: int(k[5:]))
                    returns = [statistics.fmean(seed[step]["return"]) for step in steps]
                    final.append(returns[-1])
                    best.append(max(returns))
                    frames.append(seed[steps[-1]]["step_count"])
                rows.append(
                    {
                        "task": f"{env}/{task}",
                        "algorithm": algorithm,
                        "seeds": len(seeds),
                        "final return": _mean_std(final),
                        "best return": _mean_std(best),
                        "frames": int(statistics.fmean(frames)),
                    }
                )
    return rows


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
    args = parser.parse_args()
    results = get_raw_dict_from_multirun_folder(str(args.folder))
    if not results:
        raise SystemExit(f"No marl-eval JSON files under {args.folder} (run with experiment.create_json=true).")
    table = markdown(summarise(results))
    print(table, end="")
    if args.output:
        args.output.write_text(table)


if __name__ == "__main__":
    main()
