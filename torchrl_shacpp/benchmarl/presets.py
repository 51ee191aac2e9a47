"""This package's experiment presets for Python users (the command line gets them through hydra)."""

from __future__ import annotations

from benchmarl.experiment import ExperimentConfig
from benchmarl.utils import _read_yaml_config

from torchrl_shacpp.benchmarl.models import CONFIG_DIR


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
    for key, value in _read_yaml_config(str(path)).items():
        if not hasattr(config, key):
            raise ValueError(f"Preset {preset!r} sets {key!r}, which BenchMARL's ExperimentConfig does not have.")
        setattr(config, key, value)
    return config
