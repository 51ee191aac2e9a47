"""Learning curves of BenchMARL runs side by side at equal frames: one CSV, one Markdown summary, one PNG.

Each ``PANEL/LABEL=GLOB`` names the run folders (one per seed) of one configuration; the evaluation returns come from
each run's marl-eval JSON (BenchMARL's ``experiment.create_json``), read by :mod:`torchrl_shacpp.benchmark.runs`. A run
stopped early (the paper's rule, ``torchrl_shacpp.benchmarl.run``) keeps its last evaluation return for the frames it
did not run; with ``--no-early-stop`` (tasks without that rule, e.g. BenchMARL's own) no run keeps it. For the
paper's grid and its tables, see ``python -m torchrl_shacpp.benchmark``.

    python benchmarks/learning_comparison.py --out benchmarks/results/dispersion --target 0.9 \\
        "n=1/SHAC++=runs/shacpp_n1_s*" "n=1/MAPPO=runs/mappo_n1_s*"

A ``GLOB`` of the form ``PATH/curves.csv#PANEL/LABEL`` takes that configuration's runs from an earlier comparison's
``curves.csv`` instead, so that new runs can be set beside committed ones without their run folders. A configuration
named more than once takes the runs of each: committed seeds and new ones in one row.

writes ``curves.csv`` (panel, label, seed, frames, return), ``summary.md`` (per configuration: the frames at which
the return first reached ``--target``, the mean return at ``--at`` frames (none later than one evaluation interval
after the last evaluation of a run that ended below the target, or of any run with ``--no-early-stop``), each run's
last evaluation and, with ``--baseline LABEL``, Mann-Whitney's exact tests against that configuration of the same
panel: of the frames to the target, and of the returns at each ``--at`` frames) and ``curves.png`` (mean over seeds,
the band one standard deviation, one panel per PANEL; ``--plot-frames N`` ends its curves at N frames).
"""

from __future__ import annotations

import argparse
import csv
import glob
import math
import statistics
import textwrap
from pathlib import Path

from torchrl_shacpp.benchmark.figures import band, value_at
from torchrl_shacpp.benchmark.runs import Curve, load_runs, read_scalar
from torchrl_shacpp.benchmark.stats import mann_whitney_exact


def run_curve(folder: Path, info: str | None = None) -> tuple[list[int], list[float]]:
    """The evaluation frames and mean returns of the one BenchMARL run under ``folder``, or with ``info`` the
    evaluation episodes' sums of that info term instead of the returns (mean over groups, as logged by
    :class:`~torchrl_shacpp.benchmarl.callbacks.EvaluationInfo`)."""
    runs = load_runs(folder)
    if len(runs) != 1:
        raise SystemExit(f"{folder} holds {len(runs)} BenchMARL runs; name one run's folder per seed.")
    frames = list(runs[0].evaluation.frames)
    if info is None:
        return frames, list(runs[0].evaluation.values)
    paths = sorted((runs[0].folder / runs[0].folder.name / "scalars").glob(f"eval_*_info_{info}.csv"))
    per_group = [read_scalar(path.parent, path.stem) for path in paths]  # {iteration: sum}, one per group
    if not paths or any(len(sums) != len(frames) for sums in per_group):
        raise SystemExit(
            f"{folder} has no evaluation info {info!r} for each of its {len(frames)} evaluations (the csv logger's "
            f"scalars/eval_<group>_info_{info}.csv, from torchrl_shacpp.benchmarl.run's EvaluationInfo)."
        )
    return frames, [statistics.fmean(sums[i] for sums in per_group) for i in sorted(per_group[0])]


def csv_curves(path: str, name: str) -> list[tuple[str, list[int], list[float]]]:
    """The runs of configuration ``name`` (``PANEL/LABEL``) in an earlier comparison's ``curves.csv`` at ``path``."""
    panel, _, label = name.rpartition("/")
    runs: dict[str, tuple[list[int], list[float]]] = {}
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            if (row["panel"], row["label"]) == (panel, label):
                frames, returns = runs.setdefault(row["run"], ([], []))
                frames.append(int(row["frames"]))
                returns.append(float(row["return"]))
    if not runs:
        raise SystemExit(f"{path} has no runs of {name!r}.")
    return [(run, frames, returns) for run, (frames, returns) in runs.items()]


def return_at(frames: list[int], returns: list[float], at: int, stop_target: float) -> float:
    """The return at ``at`` frames: the last evaluation at or before it, which stands until the run's next evaluation
    would have come (one evaluation interval). Beyond that a run has none, unless it stopped early on reaching
    ``stop_target`` (the paper's rule): that one keeps its last evaluation."""
    interval = frames[-1] - frames[-2] if len(frames) > 1 else 0
    if at > frames[-1] and at >= frames[-1] + interval and returns[-1] < stop_target:
        return float("nan")
    return value_at(frames, returns, at)


def first_reaching(frames: list[int], returns: list[float], target: float) -> int | None:
    return next((f for f, r in zip(frames, returns) if r >= target), None)


def rank_test(reached: list[int | None], baseline: list[int | None] | None) -> str:
    """``U = a of n·m, p = ...``: the frames to the target of a configuration's runs against the baseline's (``None``,
    never reached, ranks last)."""
    if baseline is None or reached is baseline:
        return "–"
    u, p = mann_whitney_exact(*([math.inf if f is None else f for f in frames] for frames in (reached, baseline)))
    return f"U = {u:g} of {len(reached) * len(baseline)}, p = {p:.3f}"


def returns_test(returns: list[float], baseline: list[float]) -> str:
    """``U = a of n·m, p = ...``: the returns at some frames of a configuration's runs against the baseline's, ``U``
    the pairs in which the configuration's is the higher (runs without a return there left out)."""
    returns, baseline = ([-r for r in values if r == r] for values in (returns, baseline))
    if not returns or not baseline:
        return "–"
    u, p = mann_whitney_exact(returns, baseline)
    return f"U = {u:g} of {len(returns) * len(baseline)}, p = {p:.3f}"


def mean_std(values: list[float], digits: int = 2) -> str:
    values = [v for v in values if v == v]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="PANEL/LABEL=GLOB")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--target", type=float, required=True, help="the return that counts as solved")
    parser.add_argument("--at", type=int, nargs="+", default=[60_000, 120_000, 240_000, 480_000],
                        help="frames at which to compare the returns")  # fmt: skip
    parser.add_argument("--title", default="")
    parser.add_argument("--baseline", help="the label whose frames to the target the others are tested against")
    parser.add_argument("--no-early-stop", action="store_true",
                        help="no run stopped on reaching the target: none keeps its last evaluation indefinitely")  # fmt: skip
    parser.add_argument("--info", metavar="KEY",
                        help="compare the evaluation's sums of the agents' info KEY instead of its returns, for the "
                        "runs read from run folders (e.g. task_reward: VMAS's where the task's reward is shaped)")
    parser.add_argument("--plot-frames", type=int, metavar="N",
                        help="the plot's curves end at N frames (a baseline run longer than the others hid them); "
                        "the tables are unchanged")  # fmt: skip
    args = parser.parse_args()
    # The return at which a run stopped early; a run that reached it keeps its last evaluation beyond its frames.
    stop_target = math.inf if args.no_early_stop else args.target
    args.out.mkdir(parents=True, exist_ok=True)

    configurations: dict[tuple[str, str], list[tuple[str, list[int], list[float]]]] = {}
    for spec in args.runs:
        # The source after the last "=" of the name (panels such as "n=1" hold one), before "curves.csv#".
        head, csv_source, earlier = spec.partition("curves.csv#")
        name, _, pattern = head.rpartition("=")
        panel, _, label = name.rpartition("/")
        runs = configurations.setdefault((panel, label), [])
        if csv_source:
            runs.extend(csv_curves(pattern + "curves.csv", earlier))
            continue
        folders = sorted(Path(p) for p in glob.glob(pattern))
        if not folders:
            raise SystemExit(f"No run folder matches {pattern!r} ({spec}).")
        runs.extend((folder.name, *run_curve(folder, args.info)) for folder in folders)

    with open(args.out / "curves.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["panel", "label", "run", "frames", "return"])
        for (panel, label), runs in configurations.items():
            for run, frames, returns in runs:
                writer.writerows([panel, label, run, f, f"{r:.4f}"] for f, r in zip(frames, returns))

    header = ["panel", "configuration", "runs", f"frames to {args.target:g} (runs reaching it)"]
    header += [f"return at {at // 1000}k frames" for at in args.at] + ["last evaluation (per run)"]
    if args.baseline:
        header.append(f"frames to {args.target:g} against {args.baseline}: U, exact two-sided p (not reached: last)")
        at_frames = " / ".join(f"{at // 1000}k" for at in args.at)
        header.append(f"returns at {at_frames} against {args.baseline}: U (pairs higher), exact two-sided p")
    lines = [f"# {args.title}" if args.title else "", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    frames_to_target = {
        name: [first_reaching(frames, returns, args.target) for _, frames, returns in runs]
        for name, runs in configurations.items()
    }
    returns_at = {
        name: [[return_at(frames, returns, at, stop_target) for _, frames, returns in runs] for at in args.at]
        for name, runs in configurations.items()
    }
    for (panel, label), runs in configurations.items():
        reached = frames_to_target[(panel, label)]
        reached_frames = [float(f) for f in reached if f is not None]
        to_target = f"{mean_std([f / 1000 for f in reached_frames], 0)}k" if reached_frames else "not reached"
        cells = [panel, label, str(len(runs)), f"{to_target} ({len(reached_frames)}/{len(runs)})"]
        cells += [mean_std(returns) for returns in returns_at[(panel, label)]]
        cells.append(" / ".join(f"{frames[-1] // 1000}k" for _, frames, _ in runs))
        if args.baseline:
            cells.append(rank_test(reached, frames_to_target.get((panel, args.baseline))))
            baseline_returns = returns_at.get((panel, args.baseline))
            if label == args.baseline or baseline_returns is None:
                cells.append("–")
            else:
                tests = [returns_test(r, b) for r, b in zip(returns_at[(panel, label)], baseline_returns)]
                cells.append(" / ".join(tests))
        lines.append("| " + " | ".join(cells) + " |")
    summary = "\n".join(lines).strip() + "\n"
    (args.out / "summary.md").write_text(summary)
    print(summary)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys(panel for panel, _ in configurations))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)  # a dozen configurations in one panel, each its colour
        ax.set(title=panel, xlabel="frames", ylabel="evaluation return")
        ax.grid(alpha=0.3)
    for (panel, label), runs in configurations.items():
        ax = axes[0, panels.index(panel)]
        grid, mean, std = band([Curve(tuple(frames), tuple(returns)) for _, frames, returns in runs])
        end = math.inf if args.plot_frames is None else args.plot_frames
        if not any(returns[-1] >= stop_target for _, _, returns in runs):  # no curve past its runs' last evaluation
            end = min(end, max(frames[-1] for _, frames, _ in runs))
        shown = grid <= end
        grid, mean, std = grid[shown], mean[shown], std[shown]
        baseline = {"color": "black", "linewidth": 2} if label == args.baseline else {}
        (line,) = ax.plot(grid, mean, label=textwrap.fill(f"{label} ({len(runs)})", 60), **baseline)
        ax.fill_between(grid, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    # Below each panel, outside the layout (the saved figure grows to hold them): long labels hid the curves.
    legends = [ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.18)) for ax in axes[0]]
    for legend in legends:
        legend.set_in_layout(False)
    if args.title:
        fig.suptitle(textwrap.fill(args.title, 70 * len(panels)), fontsize=10)  # wrapped to the figure's width
    fig.tight_layout()
    extra_artists = [*fig.get_default_bbox_extra_artists(), *legends]
    fig.savefig(args.out / "curves.png", dpi=110, bbox_inches="tight", bbox_extra_artists=extra_artists)
    plt.close(fig)


if __name__ == "__main__":
    main()
