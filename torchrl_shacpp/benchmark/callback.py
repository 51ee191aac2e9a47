"""The comparison's hydra callback (``hydra.callbacks.comparison`` in ``comparison.yaml``): it runs on the machine
that launched the multirun, whichever launcher ran the jobs.

* before the jobs: lists them (the basic sweeper's cartesian product of ``hydra.sweeper.params`` and the command
  line) in the sweep folder, for the runs' progress lines to count the runs done and left;
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
from omegaconf import DictConfig

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


class ComparisonCallback(Callback):
    """Lists the grid before a multirun and writes the comparison's results after it."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        jobs = grid_jobs(config)
        if jobs is not None:
            write_grid(Path(config.hydra.sweep.dir), [list(run_overrides(job)) for job in jobs])
            print(f"[comparison] {len(jobs)} runs in the grid, in {config.hydra.sweep.dir}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            write_results(Path(config.hydra.sweep.dir))
        except SystemExit as no_results:  # e.g. a grid whose every point was skipped: the multirun itself succeeded
            print(f"[comparison] no results: {no_results}")
