"""The hydra app of the comparison: ``python -m torchrl_shacpp.benchmark``, one grid point per hydra job.

    python -m torchrl_shacpp.benchmark -m benchmark=cpu                                   # the whole grid
    python -m torchrl_shacpp.benchmark -m benchmark=cpu task=vmas/transport task.n_agents=3 seed=0,1 \\
        algorithm=shacpp,mappo hydra/launcher=joblib hydra.launcher.n_jobs=2              # a slice, 2 in parallel

The config is ``benchmarl_configs/comparison.yaml``: BenchMARL's, with the scale preset (``benchmark=cpu|paper``),
each algorithm's training protocol, the early stopping and the paper's grid as the default sweep. Each job runs one
BenchMARL experiment in its own folder of the sweep folder, with the paper's early stopping, and records how it
ended; a job whose run is finished does nothing, a job whose run was interrupted restores it from its last
checkpoint, a grid point that cannot run is skipped with its reason (:mod:`~torchrl_shacpp.benchmark.grid`). At the
end of the multirun the tables and figures are written into the sweep folder
(:class:`~torchrl_shacpp.benchmark.callback.ComparisonCallback`).
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import hydra
from benchmarl.hydra_config import load_algorithm_config_from_hydra, load_experiment_from_hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from torchrl_shacpp.benchmark.grid import RunSpec, align_to_collections, skip_reason
from torchrl_shacpp.benchmark.records import RunRecord, progress
from torchrl_shacpp.benchmark.resume import experiment_folders, marl_eval_file, resume_point
from torchrl_shacpp.benchmarl.callbacks import KeepEvaluationHistory
from torchrl_shacpp.benchmarl.run import BENCHMARL_CONFIGS, early_stopping
from torchrl_shacpp.benchmarl.validation import check_task_keys

PREFIX = "[comparison]"


@hydra.main(version_base=None, config_path=BENCHMARL_CONFIGS, config_name="comparison")
def main(cfg: DictConfig) -> None:
    run_grid_point(cfg)


def run_grid_point(cfg: DictConfig) -> RunRecord:
    """Runs, resumes or skips the current hydra job's run; returns its record.

    Raises:
        ValueError: a differentiable scenario's setting on BenchMARL's VMAS task (before BenchMARL loads the task),
            or the job's folder holds a run of another configuration.
        KeyboardInterrupt: the run was interrupted (BenchMARL closes it and raises again); the record stays
            ``running`` and the next invocation restores the run from its last checkpoint.
    """
    config = HydraConfig.get()
    spec = RunSpec.from_hydra(cfg)
    check_task_keys(cfg.task, spec.task)
    folder = Path(config.runtime.output_dir)
    sweep_dir = Path(config.sweep.dir) if config.mode == RunMode.MULTIRUN else None
    record = RunRecord.load(folder)

    reason = skip_reason(cfg, spec)
    if reason is not None and record is not None and record.status != "skipped":
        # a run made under other grid rules keeps its record, and its results stay in the tables
        announce(f"{PREFIX} skip  {spec}: {reason}; its earlier run ({record.status}) is kept{progress(sweep_dir)}")
        return record
    if reason is not None:
        record = RunRecord(spec.configuration, spec.seed, list(spec.overrides), "skipped", reason=reason)
        record.save(folder)
        announce(f"{PREFIX} skip  {spec}: {reason}{progress(sweep_dir)}")
        return record
    if record is not None and record.status != "skipped" and record.overrides != list(spec.overrides):
        raise ValueError(_other_configuration(folder, record, spec))
    if record is not None and record.status == "done" and _has_marl_eval_file(folder):
        announce(f"{PREFIX} done  {spec} (in an earlier invocation){progress(sweep_dir)}")
        return record

    restore_file = resume_point(folder)
    algorithm = load_algorithm_config_from_hydra(cfg.algorithm)
    with open_dict(cfg.experiment):
        cfg.experiment.save_folder = str(folder)
        cfg.experiment.restore_file = str(restore_file) if restore_file else None
        notes = align_to_collections(cfg.experiment, algorithm.on_policy())
    RunRecord(spec.configuration, spec.seed, list(spec.overrides), "running").save(folder)
    start = f" from {restore_file.name}" if restore_file else ""
    announce(f"{PREFIX} start {spec}{start}" + "".join(f"\n{PREFIX}   {note}" for note in notes))

    stoppers = early_stopping(cfg, spec.task)
    experiment = load_experiment_from_hydra(cfg, task_name=spec.task, callbacks=[*stoppers, KeepEvaluationHistory()])
    experiment.run()
    stopped_early = any(stopper.solved_at_frames is not None for stopper in stoppers)
    summary = f"{experiment.total_frames:,} frames, {datetime.timedelta(seconds=round(experiment.total_time))}"
    record = RunRecord(
        spec.configuration, spec.seed, list(spec.overrides), "done", frames=experiment.total_frames,
        wall_time=experiment.total_time, stopped_early=stopped_early,
    )  # fmt: skip
    record.save(folder)
    ending = "early stop (solved)" if stopped_early else "budget reached"
    announce(f"{PREFIX} end   {spec}: {summary}, {ending}{progress(sweep_dir)}")
    return record


def announce(line: str) -> None:
    """Prints a progress line in one write, so that the lines of parallel workers sharing a pipe never interleave."""
    sys.stdout.flush()
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _has_marl_eval_file(folder: Path) -> bool:
    return any(marl_eval_file(experiment).exists() for experiment in experiment_folders(folder))


def _other_configuration(folder: Path, record: RunRecord, spec: RunSpec) -> str:
    theirs = sorted(set(record.overrides) - set(spec.overrides))
    ours = sorted(set(spec.overrides) - set(record.overrides))
    return (
        f"{folder} holds the run of another configuration ({' '.join(theirs) or 'no other override'}; this job: "
        f"{' '.join(ours) or 'no other override'}). A comparison folder holds one configuration per task, n_agents, "
        "model, algorithm and seed: give this one its own hydra.sweep.dir, or delete the folder to run it again."
    )


if __name__ == "__main__":
    main()

