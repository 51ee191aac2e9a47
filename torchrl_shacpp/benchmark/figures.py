"""The comparison's figures, from its runs (:mod:`~torchrl_shacpp.benchmark.runs`), as PNG.

* Fig. 1: the evaluation return against windows, mean ± std over seeds, a panel per task (row) and number of
  agents (column), a line per algorithm (colour) and architecture (line style), the number of seeds in the legend;
* Fig. 2: the actor's gradient norm per collection against windows, the same panels, for the algorithms that log it
  (the SHAC family);
* BenchMARL's marl-eval plots (performance profile, aggregate scores, sample-efficiency curves, probability of
  improvement) through :class:`benchmarl.eval_results.Plotting`, when ``id-marl-eval`` is installed.

A window is the SHAC family's collection unit, envs x steps (the paper's "episode": 512 x 32 frames); every run's
frames, MAPPO's included, are divided by the same window, so curves compare at equal frames. A run that stopped
early keeps its last value for the frames it did not run (its curve is flat from the stop on).
"""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import itertools
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from torchrl_shacpp.benchmark.runs import Curve, Run


def value_at(frames: list[int] | tuple[int, ...], values: list[float] | tuple[float, ...], at: float) -> float:
    """The value of the last point at or before ``at`` frames (NaN before the first)."""
    index = np.searchsorted(frames, at, side="right") - 1
    return values[index] if index >= 0 else float("nan")


def band(curves: list[Curve]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The frames of every curve, and the mean and standard deviation over curves at each (each curve read with
    :func:`value_at`)."""
    grid = np.unique(np.concatenate([curve.frames for curve in curves]))
    values = np.array([[value_at(curve.frames, curve.values, at) for at in grid] for curve in curves])
    with warnings.catch_warnings():  # a point before every curve's first value stays NaN, without a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return grid, np.nanmean(values, axis=0), np.nanstd(values, axis=0)


def window_frames(runs: list[Run]) -> int | None:
    """The most common window of the SHAC-family runs (None if there are none: the figures then count frames)."""
    windows = collections.Counter(run.window_frames for run in runs if run.window_frames)
    return windows.most_common(1)[0][0] if windows else None


def figure1(runs: list[Run], path: Path) -> bool:
    """Fig. 1: the evaluation return against windows. Returns whether a figure was written."""
    return _panels(runs, path, lambda run: run.evaluation, "evaluation return", log=False)


def figure2(runs: list[Run], path: Path) -> bool:
    """Fig. 2: the actor's gradient norm against windows (log scale). Returns whether a figure was written (not when
    no run logs the norm)."""
    return _panels(runs, path, lambda run: run.actor_grad_norm, "actor gradient norm", log=True)


def _panels(runs: list[Run], path: Path, curve_of: Callable[[Run], Curve], label: str, log: bool) -> bool:
    runs = [run for run in runs if curve_of(run).frames]
    if not runs:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({run.task for run in runs})
    agents = sorted({run.n_agents for run in runs}, key=lambda n: n or 0)
    window = window_frames(runs)
    fig, axes = plt.subplots(len(tasks), len(agents), figsize=(4.6 * len(agents), 3.4 * len(tasks)), squeeze=False)
    lines: dict[tuple[str, str], list[Run]] = {}
    for run in sorted(runs, key=lambda run: (run.algorithm, run.model, run.seed)):
        lines.setdefault((run.algorithm, run.model), []).append(run)
    colours = {algorithm: f"C{index}" for index, algorithm in enumerate(sorted({a for a, _ in lines}))}
    styles = dict(zip(sorted({model for _, model in lines}), itertools.cycle(["-", "--", ":", "-."])))
    for ax in axes.flat:
        ax.set_visible(False)
    for (algorithm, model), line_runs in lines.items():
        for (task, n_agents), seeds in itertools.groupby(
            sorted(line_runs, key=lambda run: (run.task, run.n_agents or 0)), key=lambda run: (run.task, run.n_agents)
        ):
            seeds = list(seeds)
            ax = axes[tasks.index(task), agents.index(n_agents)]
            ax.set_visible(True)
            frames, mean, std = band([curve_of(run) for run in seeds])
            x = frames / window if window else frames
            colour = colours[algorithm]
            ax.plot(x, mean, ".", color=colour, linestyle=styles[model], label=f"{algorithm} {model} ({len(seeds)})")
            ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2)
            ax.set_title(f"{task}, n = {n_agents}")
            ax.set_xlabel(f"windows of {window:,} frames" if window else "frames")
            ax.set_ylabel(label)
            if log:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def marl_eval_figures(runs: list[Run], folder: Path) -> list[Path]:
    """BenchMARL's marl-eval plots of the runs into ``folder``, one set per environment (``vmas``): each task,
    number of agents and architecture is a marl-eval task, compared over the algorithms that ran on all of them.
    Empty (with a printed reason) without ``id-marl-eval`` or with fewer than two such algorithms."""
    if importlib.util.find_spec("marl_eval") is None:
        print("[comparison] BenchMARL's marl-eval plots need id-marl-eval: pip install id-marl-eval")
        return []
    from benchmarl.eval_results import Plotting
    from matplotlib import pyplot as plt

    written = []
    for env in sorted({run.task.split("/")[0] for run in runs}):
        raw: dict[str, dict[str, dict[str, dict]]] = {}
        for run in runs:
            if run.task.startswith(f"{env}/"):
                name = f"{run.task.split('/')[1]}_n{run.n_agents}_{run.model}"
                raw.setdefault(name, {}).setdefault(run.algorithm, {})[f"seed_{run.seed}"] = run.marl_eval
        common = sorted(set.intersection(*(set(algorithms) for algorithms in raw.values())))
        if len(common) < 2:
            print(f"[comparison] no marl-eval plots for {env}: fewer than two algorithms ran on all its tasks")
            continue
        raw = {task: {algorithm: algorithms[algorithm] for algorithm in common} for task, algorithms in raw.items()}
        processed = Plotting.process_data({env: raw})
        environment_matrix, sample_efficiency_matrix = Plotting.create_matrices(processed, env_name=env)
        out = folder / f"marl_eval_{env}"
        out.mkdir(parents=True, exist_ok=True)
        with _working_directory(out):  # marl-eval writes its aggregate-score table into the working directory
            figures = {
                "performance_profile": Plotting.performance_profile_figure(environment_matrix),
                "aggregate_scores": Plotting.aggregate_scores(environment_matrix),
                "sample_efficiency": Plotting.environemnt_sample_efficiency_curves(sample_efficiency_matrix),
                "probability_of_improvement": Plotting.probability_of_improvement(
                    environment_matrix, algorithms_to_compare=[list(pair) for pair in itertools.combinations(common, 2)]
                ),
            }
        for name, figure in figures.items():
            figure = figure[0] if isinstance(figure, tuple) else figure
            figure.savefig(out / f"{name}.png", dpi=110, bbox_inches="tight")
            plt.close(figure)
            written.append(out / f"{name}.png")
    return written


@contextlib.contextmanager
def _working_directory(folder: Path) -> Iterator[None]:
    """``contextlib.chdir`` for Python 3.10."""
    previous = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)
