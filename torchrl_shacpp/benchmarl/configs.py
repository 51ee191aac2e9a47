"""This package's BenchMARL configs (``benchmarl_configs/``) for Python users: where they are, how to read one, the
experiment presets."""

from __future__ import annotations

import importlib.resources
import pathlib
from typing import Any

from benchmarl.experiment import ExperimentConfig
from omegaconf import OmegaConf

#: The package's configs: ``algorithm/``, ``experiment/``, ``model/layers/``, ``task/vmas/``.
CONFIG_DIR = pathlib.Path(str(importlib.resources.files("torchrl_shacpp.benchmarl_configs")))


def read_config(path: str | pathlib.Path) -> dict[str, Any]:
    """A yaml config as a plain dict, interpolations resolved, without hydra's ``defaults`` list."""
    config = OmegaConf.load(path)
    config.pop("defaults", None)
    return OmegaConf.to_container(config, resolve=True)


def experiment_config(preset: str) -> ExperimentConfig:
    """BenchMARL's ``base_experiment`` updated by ``experiment/<preset>.yaml`` of this package.

    Args:
        preset: ``"shacpp_paper"`` (the paper's protocol) or ``"shacpp_cpu"`` (its CPU-sized version).

    Examples:
        >>> config = experiment_config("shacpp_paper")
        >>> config.on_policy_n_envs_per_worker, config.on_policy_collected_frames_per_batch
        (512, 16384)
    """
    path = CONFIG_DIR / "experiment" / f"{preset}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ValueError(f"Unknown experiment preset {preset!r}; this package has {', '.join(known)}.")
    config = ExperimentConfig.get_from_yaml()
    for key, value in read_config(path).items():
        if not hasattr(config, key):
            raise ValueError(f"Preset {preset!r} sets {key!r}, which BenchMARL's ExperimentConfig does not have.")
        setattr(config, key, value)
    return config
