"""Resuming a run of the comparison: where an interrupted run restarts (its evaluation history is kept by
:class:`~torchrl_shacpp.benchmarl.callbacks.KeepEvaluationHistory`).

A run's folder (the hydra job's output folder) holds one BenchMARL experiment folder. An interrupted run restarts
from the last checkpoint BenchMARL wrote there (``experiment.checkpoint_interval``, via ``experiment.restore_file``),
in the same experiment folder; a run interrupted before its first checkpoint starts again from scratch.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def experiment_folders(folder: Path) -> list[Path]:
    """The BenchMARL experiment folders directly in ``folder`` (each holds BenchMARL's ``config.pkl``)."""
    return sorted(path.parent for path in folder.glob("*/config.pkl"))


def marl_eval_file(experiment_folder: Path) -> Path:
    """The marl-eval JSON BenchMARL writes in an experiment folder (``experiment.create_json``)."""
    return experiment_folder / f"{experiment_folder.name}.json"


def checkpoint_frames(path: Path) -> int:
    """The frames of a BenchMARL checkpoint, from its name ``checkpoint_<frames>.pt``."""
    return int(path.stem.rpartition("_")[2])


def resume_point(folder: Path) -> Path | None:
    """The last checkpoint in the run folder ``folder``, or None to start afresh. Experiment folders that will not
    be resumed (the older attempts, or an attempt interrupted before its first checkpoint) are deleted, so the run
    folder ends with one experiment."""
    checkpoints = list(folder.glob("*/checkpoints/checkpoint_*.pt"))
    restore = max(checkpoints, key=checkpoint_frames, default=None)
    for experiment_folder in experiment_folders(folder):
        if restore is None or experiment_folder != restore.parents[1]:
            print(f"[comparison] discarding {experiment_folder} (no checkpoint to resume it from)")
            shutil.rmtree(experiment_folder)
    return restore
