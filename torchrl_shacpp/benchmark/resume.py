"""Resuming a run of the comparison: where an interrupted run restarts, and its evaluation history kept across the
restart.

A run's folder (the hydra job's output folder) holds one BenchMARL experiment folder. An interrupted run restarts
from the last checkpoint BenchMARL wrote there (``experiment.checkpoint_interval``, via ``experiment.restore_file``),
in the same experiment folder; a run interrupted before its first checkpoint starts again from scratch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from benchmarl.experiment.callback import Callback


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


class KeepEvaluationHistory(Callback):
    """Keeps a restored run's earlier evaluations in its marl-eval JSON.

    BenchMARL's JSON writer of a restored experiment starts empty and rewrites the file at the next evaluation,
    losing every evaluation before the checkpoint. After the checkpoint is loaded, this callback reads the file back
    into the writer: the evaluations up to the checkpoint's frames, and the best value of each metric over them
    (marl-eval's ``absolute_metrics``); the iterations after the checkpoint are trained again and re-evaluated.
    """

    def on_load_state_dict(self, state_dict: dict[str, Any]) -> None:
        writer = self.experiment.logger.json_writer
        if writer is None or not writer.path.exists():
            return
        data = json.loads(writer.path.read_text())
        ((previous,),) = [
            list(seeds.values())
            for tasks in data.values()
            for algorithms in tasks.values()
            for seeds in algorithms.values()
        ]
        steps = {
            key: value
            for key, value in previous.items()
            if key.startswith("step_") and value["step_count"] <= self.experiment.total_frames
        }
        best: dict[str, list[float]] = {}
        for step in steps.values():
            for metric, values in step.items():
                if isinstance(values, list) and values:
                    best[metric] = [max([*values, *best.get(metric, [])])]
        writer.run_data.clear()
        writer.run_data.update(absolute_metrics=best, **steps)
