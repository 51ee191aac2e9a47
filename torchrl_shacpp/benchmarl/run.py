"""``python -m benchmarl.run`` with the paper's early stopping and the evaluations' info terms logged, for every
algorithm (MAPPO included).

    python -m torchrl_shacpp.benchmarl.run -m algorithm=shacpp,mappo task=vmas/transport experiment=shacpp_paper

takes exactly BenchMARL's configuration and overrides, and adds :class:`~torchrl_shacpp.benchmarl.EvaluationInfo`
(the evaluation episodes' info terms, e.g. navigation's collisions, logged as ``eval/<group>/info/<key>``) and
:class:`~torchrl_shacpp.benchmarl.EarlyStopping` (90% of the evaluation envs at 90% of the maximum reward; change it
with ``+early_stopping.env_fraction=0.8`` or ``+early_stopping.reward_fraction=0.8``, or turn it off with
``+early_stopping=false``, e.g. to follow a run past the target). On a task whose maximum the paper does not define
(e.g. vmas/sampling) the run has no early stopping unless ``+early_stopping.max_episode_reward=<number>`` gives one.
A run restored with ``experiment.restore_file`` keeps its evaluations before the checkpoint in its marl-eval JSON
(:class:`~torchrl_shacpp.benchmarl.KeepEvaluationHistory`; BenchMARL's own run starts that file afresh), and steps at
the rates its configuration gives, not at the checkpoint's.
"""

from __future__ import annotations

from pathlib import Path

import benchmarl
import hydra
from benchmarl.experiment.callback import Callback
from benchmarl.hydra_config import load_experiment_from_hydra, load_task_config_from_hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from torchrl_shacpp.benchmarl.algorithms.shac import STATE_KEY
from torchrl_shacpp.benchmarl.callbacks import (
    EarlyStopping,
    EvaluationInfo,
    KeepEvaluationHistory,
    has_paper_max_episode_reward,
)
from torchrl_shacpp.benchmarl.validation import (
    SHAC_FAMILY,
    check_checkpoint_algorithm,
    check_save_folder,
    check_task_keys,
)

BENCHMARL_CONFIGS = str(Path(benchmarl.__file__).parent / "conf")


@hydra.main(version_base=None, config_path=BENCHMARL_CONFIGS, config_name="config")
def run_with_early_stopping(cfg: DictConfig) -> None:
    """Runs one BenchMARL experiment from its hydra config, logging its evaluations' info terms and stopping early
    once the task is solved.

    Before BenchMARL sets up, it refuses a differentiable scenario's setting on BenchMARL's VMAS task, a
    ``save_folder`` that does not exist, and a ``restore_file`` of the SHAC family for another algorithm (the SHAC
    family checks its own checkpoints at set-up).
    """
    choices = HydraConfig.get().runtime.choices
    check_task_keys(cfg.task, choices.task)
    check_save_folder(cfg.experiment.save_folder)
    if cfg.experiment.restore_file is not None and choices.algorithm not in SHAC_FAMILY:
        check_checkpoint_algorithm(cfg.experiment.restore_file, choices.algorithm, STATE_KEY)
    callbacks = [EvaluationInfo(), KeepEvaluationHistory(), *early_stopping(cfg, choices.task)]
    load_experiment_from_hydra(cfg, task_name=choices.task, callbacks=callbacks).run()


def early_stopping(cfg: DictConfig, task_name: str) -> list[Callback]:
    """``[EarlyStopping(**cfg.early_stopping)]``, or no callback (with a printed line saying so) with
    ``early_stopping=false`` or on a task whose maximum reward neither the paper nor
    ``early_stopping.max_episode_reward`` gives."""
    setting = cfg.get("early_stopping")
    if setting is False:
        print("No early stopping: early_stopping=false.")
        return []
    if setting is not None and not isinstance(setting, DictConfig):
        raise ValueError(
            f"early_stopping={setting!r}: pass +early_stopping=false to turn the paper's early stopping off, or set "
            "its fields, e.g. +early_stopping.env_fraction=0.8."
        )
    early_stopping_kwargs = dict(setting or {})
    task = load_task_config_from_hydra(cfg.task, task_name)
    if "max_episode_reward" in early_stopping_kwargs or has_paper_max_episode_reward(task):
        return [EarlyStopping(**early_stopping_kwargs)]
    print(f"No early stopping: the paper defines no maximum reward for {task_name}.")
    return []


if __name__ == "__main__":
    run_with_early_stopping()
