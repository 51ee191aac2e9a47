"""What the comparison keeps between invocations: a record per run (in its folder) and the grid of the current
multirun (in the sweep folder), from which each run's progress line counts the runs done and left.

Files, not a process, hold this state, so it is the same whichever launcher ran the jobs (sequential, joblib,
SLURM, Ray) and whichever invocation: a run's record says it is running, done or skipped, with the command line that
made it; the grid lists every job's command line.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

#: The record of a run, in its folder (the hydra job's output folder).
RECORD = "comparison_run.json"
#: The jobs of the latest multirun, in the sweep folder.
GRID = "grid.json"


@dataclasses.dataclass
class RunRecord:
    """A run's state between invocations.

    Attributes:
        configuration: the run without its seed (``vmas/transport n=3 shacpp transformer``).
        seed: its seed.
        overrides: the job's command line, sorted: a folder holds one configuration.
        status: ``running`` (started, or interrupted), ``done`` or ``skipped``.
        reason: why the grid skipped the run.
        frames: frames collected when the run ended (early stop or budget).
        wall_time: BenchMARL's training wall time in seconds (evaluations included), over every restart.
        stopped_early: whether the early stopping ended the run before its budget.
    """

    configuration: str
    seed: int
    overrides: list[str]
    status: str
    reason: str | None = None
    frames: int | None = None
    wall_time: float | None = None
    stopped_early: bool | None = None

    @classmethod
    def load(cls, folder: Path) -> RunRecord | None:
        """The record in ``folder``, or None if the comparison never started a run there."""
        path = folder / RECORD
        return cls(**json.loads(path.read_text())) if path.exists() else None

    def save(self, folder: Path) -> None:
        """Writes the record, atomically: an interruption leaves the old record or the new one."""
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f"{RECORD}.tmp"
        temporary.write_text(json.dumps(dataclasses.asdict(self), indent=1))
        temporary.replace(folder / RECORD)

    @property
    def finished(self) -> bool:
        """Whether a next invocation has nothing to do for this run."""
        return self.status in ("done", "skipped")


def write_grid(sweep_dir: Path, jobs: list[list[str]]) -> None:
    """Records the jobs of the multirun about to start, each as its run's overrides (``grid.run_overrides``)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / GRID).write_text(json.dumps(jobs, indent=1))


def count_finished(sweep_dir: Path) -> tuple[int, int] | None:
    """``(finished, total)`` runs of the grid in ``sweep_dir``, or None without a grid (a single run, or a sweeper
    whose jobs are not known in advance)."""
    path = sweep_dir / GRID
    if not path.exists():
        return None
    grid = {tuple(job) for job in json.loads(path.read_text())}
    finished = set()
    for record_path in sweep_dir.rglob(RECORD):
        record = RunRecord.load(record_path.parent)
        if record.finished and tuple(record.overrides) in grid:
            finished.add(tuple(record.overrides))
    return len(finished), len(grid)


def progress(sweep_dir: Path | None) -> str:
    """`` | runs finished k/N, left N-k`` for a progress line, or nothing outside a multirun with a grid."""
    try:
        counts = count_finished(sweep_dir) if sweep_dir is not None else None
    except OSError:  # another worker deleted a folder while this one walked the sweep (resume's clean-up)
        counts = None
    if counts is None:
        return ""
    finished, total = counts
    return f" | runs finished {finished}/{total}, left {total - finished}"
