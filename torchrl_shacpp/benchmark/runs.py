"""What a BenchMARL run left behind, read back for the comparison's tables and figures: any BenchMARL experiment
folder (``python -m benchmarl.run``, ``torchrl_shacpp.benchmarl.run`` or the comparison's runs).

An experiment folder holds BenchMARL's ``config.pkl`` (the task, algorithm, models, seed and experiment config),
the marl-eval JSON written at each evaluation (``experiment.create_json``) and, with the csv logger, the scalars
(``<name>/scalars/*.csv``: the frame counter, the wall time, the SHAC family's ``actor_grad_norm``). The comparison's
record next to it (:class:`~torchrl_shacpp.benchmark.records.RunRecord`) says how the run ended. The marl-eval JSON
files cannot be merged across a grid (they are keyed by task, algorithm and seed only: ``n_agents`` and the model
would collide), so each run is read on its own.
"""

from __future__ import annotations

import csv
import json
import math
import pickle
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchrl_shacpp.benchmark.grid import architecture, model_name
from torchrl_shacpp.benchmark.records import RunRecord
from torchrl_shacpp.benchmark.resume import marl_eval_file


@dataclass(frozen=True)
class Curve:
    """A quantity against the frames collected: one value per evaluation or per collection."""

    frames: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class Run:
    """One BenchMARL run of the comparison.

    Attributes:
        folder: the BenchMARL experiment folder.
        task: ``env/task`` as BenchMARL files it (``vmas/dispersion`` for ``task=vmas/dispersion_paper``).
        n_agents: the task's ``n_agents`` (None if it has none).
        model: the architecture (``mlp``, ``transformer``; ``<policy>+<critic>-critic`` when the two differ).
        algorithm: BenchMARL's name (``shacpp``, ``mappo``).
        seed: the seed.
        window_frames: the SHAC family's window, envs x steps (the paper's "episode"); None for other algorithms.
        evaluation: the mean evaluation return (over episodes, BenchMARL's ``return``) at each evaluation.
        actor_grad_norm: the actor's gradient norm per collection (the SHAC family logs it; the paper's Fig. 2).
        frames: the frames collected when the run ended, or so far.
        wall_time: BenchMARL's wall time in seconds (None without the csv logger).
        status: ``done`` or ``running`` from the comparison's record; None for a run the comparison did not make.
        stopped_early: whether the early stopping ended the run (None if unknown).
        marl_eval: the run's entry of its marl-eval JSON (``step_<i>`` and ``absolute_metrics``).
    """

    folder: Path
    task: str
    n_agents: int | None
    model: str
    algorithm: str
    seed: int
    window_frames: int | None
    evaluation: Curve
    actor_grad_norm: Curve
    frames: int
    wall_time: float | None
    status: str | None
    stopped_early: bool | None
    marl_eval: dict[str, Any]

    @property
    def final_return(self) -> float:
        return self.evaluation.values[-1]

    @property
    def best_return(self) -> float:
        return max((value for value in self.evaluation.values if math.isfinite(value)), default=math.nan)


def load_runs(folder: Path) -> list[Run]:
    """Every BenchMARL run under ``folder`` that evaluated at least once.

    Raises:
        SystemExit: with the cause and the fix: ``folder`` missing, no run in it, no run with a marl-eval JSON, or no
            run whose JSON can be read (truncated, or not a marl-eval file); unreadable runs beside readable ones are
            left out with a printed line.
    """
    if not folder.is_dir():
        raise SystemExit(f"{folder} not found." if not folder.exists() else f"{folder} is not a folder of runs.")
    experiments = sorted(path.parent for path in folder.rglob("config.pkl"))
    evaluated = [experiment for experiment in experiments if marl_eval_file(experiment).exists()]
    if not experiments:
        raise SystemExit(
            f"No BenchMARL runs and no marl-eval JSON files under {folder}: point the table at the outputs/ or "
            "multirun/ folder of runs made with experiment.create_json=true and experiment.evaluation=true."
        )
    if not evaluated:
        raise SystemExit(
            f"No marl-eval JSON files under {folder}, in {len(experiments)} BenchMARL run(s): BenchMARL writes them "
            "at each evaluation, so run with experiment.create_json=true and experiment.evaluation=true."
        )
    runs, unreadable = [], []
    for experiment in evaluated:
        try:
            runs.append(load_run(experiment))
        except SystemExit as error:  # e.g. a JSON being rewritten by a run still going: the others are the results
            unreadable.append(str(error))
    if not runs:
        raise SystemExit("\n".join(unreadable))
    for reason in unreadable:
        print(f"[comparison] left out: {reason}")
    return runs


def load_run(folder: Path) -> Run:
    """The run in the BenchMARL experiment folder ``folder`` (which has its marl-eval JSON)."""
    marl_eval = _marl_eval_entry(marl_eval_file(folder))
    with open(folder / "config.pkl", "rb") as file:  # BenchMARL's order (Experiment._setup_name)
        task, task_config, algorithm_config, model_config, seed, experiment_config, critic_model_config = (
            pickle.load(file) for _ in range(7)
        )
    algorithm = algorithm_config.associated_class().__name__.lower()
    models = (model_config, critic_model_config)
    window_length = getattr(algorithm_config, "window_length", None)
    window_frames = None
    if hasattr(algorithm_config, "window_length"):  # the SHAC family; a window of None is the whole collection
        window_frames = experiment_config.on_policy_collected_frames_per_batch
        if window_length:
            window_frames = experiment_config.on_policy_n_envs_per_worker * window_length
    steps = sorted((key for key in marl_eval if key.startswith("step_")), key=lambda key: int(key[len("step_") :]))
    evaluation = Curve(
        tuple(marl_eval[step]["step_count"] for step in steps),
        tuple(statistics.fmean(marl_eval[step]["return"]) for step in steps),
    )
    scalars = folder / folder.name / "scalars"
    frames_logged = read_scalar(scalars, "counters_total_frames")
    grad_norms = [read_scalar(path.parent, path.stem) for path in sorted(scalars.glob("train_*_actor_grad_norm.csv"))]
    iterations = sorted(set(frames_logged).intersection(*grad_norms)) if grad_norms else []
    time_logged = read_scalar(scalars, "timers_total_time")
    record = RunRecord.load(folder.parent)
    return Run(
        folder=folder,
        task=f"{task.env_name()}/{task.name.lower()}",
        n_agents=task_config.get("n_agents"),
        model=architecture(*map(model_name, models)),
        algorithm=algorithm,
        seed=seed,
        window_frames=window_frames,
        evaluation=evaluation,
        actor_grad_norm=Curve(
            tuple(int(frames_logged[i]) for i in iterations),
            tuple(statistics.fmean(norms[i] for norms in grad_norms) for i in iterations),
        ),
        frames=int(frames_logged[max(frames_logged)]) if frames_logged else evaluation.frames[-1],
        wall_time=time_logged[max(time_logged)] if time_logged else None,
        status=record.status if record else None,
        stopped_early=record.stopped_early if record else None,
        marl_eval=marl_eval,
    )


def read_scalar(folder: Path, name: str) -> dict[int, float]:
    """A csv scalar of BenchMARL's logger as ``{iteration: value}``; a restored run logs the iterations after its
    checkpoint again, and the last value of an iteration wins. Empty if the run has no such scalar."""
    path = folder / f"{name}.csv"
    if not path.exists():
        return {}
    with open(path) as file:
        rows = {}
        for row in csv.reader(file):
            try:
                rows[int(row[0])] = float(row[1])
            except (IndexError, ValueError):  # a line cut short by a killed run
                continue
        return rows


def _marl_eval_entry(path: Path) -> dict[str, Any]:
    """The one seed entry of a run's marl-eval JSON (env / task / algorithm / seed / ``step_<i>``)."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SystemExit(f"{path} is not valid JSON ({error}): a truncated file, or one still being written.")
    entries = [data]
    for _ in range(4):  # env -> task -> algorithm -> seed
        entries = [value for level in entries if isinstance(level, Mapping) for value in level.values()]
    entry = entries[0] if len(entries) == 1 and isinstance(entries[0], Mapping) else {}
    steps = [value for key, value in entry.items() if key.startswith("step_")]
    if not steps or not all(isinstance(step, Mapping) and {"step_count", "return"} <= step.keys() for step in steps):
        raise SystemExit(
            f"{path} is not a marl-eval file of BenchMARL (env / task / algorithm / seed / step_<n> with a "
            "step_count and returns): move it out of the folder, or point the table at the run folders."
        )
    return entry
