"""``python -m benchmarl.run`` with the paper's early stopping, for every algorithm (MAPPO included).

    python -m torchrl_shacpp.benchmarl.run -m algorithm=shacpp,mappo task=vmas/transport experiment=shacpp_paper

takes exactly BenchMARL's configuration and overrides, and adds :class:`~torchrl_shacpp.benchmarl.EarlyStopping`
(90% of the evaluation envs at 90% of the maximum reward; change it with ``+early_stopping.env_fraction=0.8``
or ``+early_stopping.reward_fraction=0.8``).
"""

from __future__ import annotations

from pathlib import Path

import benchmarl
import hydra
from benchmarl.hydra_config import load_experiment_from_hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from torchrl_shacpp.benchmarl.callbacks import EarlyStopping

BENCHMARL_CONFIGS = str(Path(benchmarl.__file__).parent / "conf")


@hydra.main(version_base=None, config_path=BENCHMARL_CONFIGS, config_name="config")
def run_with_early_stopping(cfg: DictConfig) -> None:
    """Runs one BenchMARL experiment from its hydra config, stopping early once the task is solved."""
    task_name = HydraConfig.get().runtime.choices.task
    early_stopping = EarlyStopping(**cfg.get("early_stopping", {}))
    load_experiment_from_hydra(cfg, task_name=task_name, callbacks=[early_stopping]).run()


if __name__ == "__main__":
    run_with_early_stopping()
