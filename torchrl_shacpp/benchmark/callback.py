"""The comparison's hydra callback (``hydra.callbacks.comparison`` in ``comparison.yaml``): it runs on the machine
that launched the multirun, whichever launcher ran the jobs.

* before the jobs: refuses a grid in which two jobs would share a run folder, and lists the jobs (the basic
  sweeper's cartesian product of ``hydra.sweeper.params`` and the command line) in the sweep folder, for the runs'
  progress lines to count the runs done and left;
* after the jobs: writes and prints the tables and figures of every run in the sweep folder
  (:func:`~torchrl_shacpp.benchmark.results.write_results`). A multirun whose jobs failed ends before this; the
  same tables come from ``python -m torchrl_shacpp.benchmark.results <sweep folder>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from torchrl_shacpp.benchmark.grid import run_overrides
from torchrl_shacpp.benchmark.records import write_grid
from torchrl_shacpp.benchmark.results import write_results


def grid_jobs(config: DictConfig) -> list[list[str]] | None:
    """Every job's overrides, as hydra's basic sweeper makes them; None under another sweeper."""
    if not config.hydra.sweeper._target_.endswith(".BasicSweeper"):
        return None
    params = [f"{key}={value}" for key, value in (config.hydra.sweeper.params or {}).items()]
    overrides = OverridesParser.create().parse_overrides([*params, *config.hydra.overrides.task])
    return [job for batch in BasicSweeper.split_arguments(overrides, max_batch_size=None) for job in batch]


def folder_collision(jobs: list[tuple[str, ...]], subdir: str) -> str | None:
    """Why two jobs (each its run's overrides, :func:`~torchrl_shacpp.benchmark.grid.run_overrides`) would share a run
    folder (None if none would): the folder's name (``subdir``, hydra's template) holds only some keys, and two jobs
    that differ only in other keys (``experiment.lr=1e-3,3e-3``, ``model@critic_model=...``) would train into one
    folder at once."""
    seen: dict[tuple[str, ...], tuple[str, ...]] = {}
    for job in jobs:
        in_name = tuple(override for override in job if override.lstrip("+~").split("=", 1)[0] in subdir)
        other = seen.setdefault(in_name, job)
        if other != job:
            differing = " ".join(sorted(set(job) ^ set(other)))
            return (
                f"Two jobs of this multirun would share a run folder: they differ only in {differing}, which the "
                f"folder's name (hydra.sweep.subdir={subdir}) does not hold. Add the key to hydra.sweep.subdir, or "
                "run each value into its own hydra.sweep.dir."
            )
    return None


class ComparisonCallback(Callback):
    """Lists the grid before a multirun and writes the comparison's results after it."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        jobs = grid_jobs(config)
        if jobs is not None:
            runs = [run_overrides(job) for job in jobs]
            collision = folder_collision(runs, OmegaConf.to_container(config.hydra.sweep, resolve=False)["subdir"])
            if collision is not None:
                raise ValueError(collision)
            write_grid(Path(config.hydra.sweep.dir), [list(run) for run in runs])
            print(f"[comparison] {len(jobs)} runs in the grid, in {config.hydra.sweep.dir}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            write_results(Path(config.hydra.sweep.dir))
        except SystemExit as no_results:  # e.g. a grid whose every point was skipped: the multirun itself succeeded
            print(f"[comparison] no results: {no_results}")
