"""The comparison's tables, from its runs (:mod:`~torchrl_shacpp.benchmark.runs`): the paper's Table 1 and a raw
table, each as Markdown and CSV.

* Table 1 (the paper's layout): a row per task and number of agents, a column per architecture and algorithm; each
  cell is the mean over seeds of the last evaluation return, divided by the row's best cell (1.00, in bold). A row
  whose best return is not positive cannot be normalised: its cells read ``n/a`` (the raw table has the returns).
* The raw table: a row per task, n, algorithm and architecture, with the seeds, the last and the best evaluation
  return (mean ± std over seeds), the frames and wall time to the early stop or the budget, and the early stops.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any, Optional

from torchrl_shacpp.benchmark.runs import Run

#: The paper's column order (PPO, SHAC, SHAC+, SHAC++); other algorithms and models follow alphabetically.
ALGORITHM_ORDER = ("mappo", "ippo", "shac", "shacp", "shacpp")
MODEL_ORDER = ("mlp", "transformer")

#: A configuration: task, n_agents, algorithm, model.
Cell = tuple[str, Optional[int], str, str]


def _rank(order: Sequence[str]) -> Callable[[str], tuple[int, str]]:
    return lambda name: (order.index(name) if name in order else len(order), name)


def group(runs: list[Run]) -> dict[Cell, list[Run]]:
    """The runs by task, n_agents, algorithm and architecture (the seeds of one configuration)."""
    cells: dict[Cell, list[Run]] = {}
    for run in sorted(runs, key=lambda run: run.seed):
        cells.setdefault((run.task, run.n_agents, run.algorithm, run.model), []).append(run)
    return cells


def normalised_table(runs: list[Run]) -> tuple[list[str], list[list[Any]]]:
    """Table 1: the header and the rows ``[task, n_agents, value per column]``, where a value is the cell's mean last
    evaluation return over seeds divided by the row's best (None where the configuration has no run, NaN where the
    row's best is not positive)."""
    cells = {cell: statistics.fmean(run.final_return for run in seeds) for cell, seeds in group(runs).items()}
    columns = sorted(
        {(model, algorithm) for _, _, algorithm, model in cells},
        key=lambda column: (_rank(MODEL_ORDER)(column[0]), _rank(ALGORITHM_ORDER)(column[1])),
    )
    rows = []
    for task, n_agents in sorted({(task, n) for task, n, _, _ in cells}, key=lambda row: (row[0], row[1] or 0)):
        means = [cells.get((task, n_agents, algorithm, model)) for model, algorithm in columns]
        best = max((mean for mean in means if mean is not None and math.isfinite(mean)), default=math.nan)
        rows.append(
            [task, n_agents, *(None if mean is None else mean / best if best > 0 else float("nan") for mean in means)]
        )
    return ["task", "n_agents", *(f"{model} {algorithm}" for model, algorithm in columns)], rows


def raw_table(runs: list[Run]) -> tuple[list[str], list[list[Any]]]:
    """The raw table: the header and a row per configuration, with means and standard deviations over its seeds
    (the standard deviation is None for a single seed)."""
    header = [
        "task", "n_agents", "algorithm", "model", "seeds", "final_return", "final_return_std", "best_return",
        "best_return_std", "frames", "frames_std", "wall_time_s", "wall_time_s_std", "early_stops", "unfinished",
    ]  # fmt: skip
    rows = []
    for (task, n_agents, algorithm, model), seeds in sorted(group(runs).items(), key=lambda item: _cell_order(item[0])):
        times = [run.wall_time for run in seeds if run.wall_time is not None]
        rows.append(
            [
                task, n_agents, algorithm, model, len(seeds),
                *_mean_std([run.final_return for run in seeds]),
                *_mean_std([run.best_return for run in seeds]),
                *_mean_std([float(run.frames) for run in seeds]),
                *(_mean_std(times) if len(times) == len(seeds) else (None, None)),
                # over the finished runs; unknown for runs made outside the comparison (plain benchmarl.run folders)
                None if all(run.status is None for run in seeds) else sum(bool(run.stopped_early) for run in seeds),
                sum(run.status == "running" for run in seeds),
            ]
        )  # fmt: skip
    return header, rows


def _cell_order(cell: Cell) -> tuple:
    task, n_agents, algorithm, model = cell
    return task, n_agents or 0, _rank(MODEL_ORDER)(model), _rank(ALGORITHM_ORDER)(algorithm)


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def to_csv(header: list[str], rows: list[list[Any]]) -> str:
    """A table as CSV: numbers in full, empty cells for missing values."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if value is None else value for value in row] for row in rows)
    return text.getvalue()


def normalised_markdown(header: list[str], rows: list[list[Any]]) -> str:
    """Table 1 as Markdown: two decimals, the row's best in bold, ``–`` where a configuration has no run."""

    def cell(value: float | None) -> str:
        if value is None:
            return "–"
        if value != value:
            return "n/a"
        return f"**{value:.2f}**" if value == 1 else f"{value:.2f}"

    lines = [_markdown_row(header), "|" + "---|" * 2 + "---:|" * (len(header) - 2)]
    lines += [_markdown_row([task, "–" if n is None else n, *map(cell, values)]) for task, n, *values in rows]
    note = (
        "\nEach cell: the mean over seeds of the last evaluation return, divided by the row's best; n/a: the row's best"
        " return is not positive (see the raw table).\n"
    )
    return "\n".join(lines) + "\n" + note


def raw_markdown(header: list[str], rows: list[list[Any]]) -> str:
    """The raw table as Markdown: ``mean ± std`` cells, frames in thousands, wall time in minutes."""
    columns = ["task", "n", "algorithm", "model", "seeds", "final return", "best return", "frames (k)",
               "wall time (min)", "early stops"]  # fmt: skip
    lines = [_markdown_row(columns), "|" + "---|" * 4 + "---:|" * (len(columns) - 4)]
    for row in rows:
        values = dict(zip(header, row))
        stops = "unknown" if values["early_stops"] is None else f"{values['early_stops']}/{values['seeds']}"
        if values["unfinished"]:
            stops += f" ({values['unfinished']} unfinished)"
        lines.append(
            _markdown_row(
                [
                    values["task"], "–" if values["n_agents"] is None else values["n_agents"], values["algorithm"],
                    values["model"], values["seeds"], _pm(values["final_return"], values["final_return_std"], 3),
                    _pm(values["best_return"], values["best_return_std"], 3),
                    _pm(values["frames"], values["frames_std"], 1, scale=1e-3),
                    _pm(values["wall_time_s"], values["wall_time_s_std"], 1, scale=1 / 60), stops,
                ]
            )
        )  # fmt: skip
    return "\n".join(lines) + "\n"


def _pm(mean: float | None, std: float | None, digits: int, scale: float = 1.0) -> str:
    if mean is None:
        return "–"
    text = f"{mean * scale:.{digits}f}"
    return text if std is None else f"{text} ± {std * scale:.{digits}f}"


def _markdown_row(values: Sequence[Any]) -> str:
    return "| " + " | ".join(str(value) for value in values) + " |"
