"""BenchMARL integration: ``algorithm=shac|shacp|shacpp``, ``model=layers/transformer|slot_set``, presets, callbacks.

After ``pip install``, the ``hydra_plugins`` SearchPathPlugin puts this package's configs on BenchMARL's search path
and calls :func:`register`, so ``python -m benchmarl.run algorithm=shacpp task=vmas/transport`` works. Python
users import from here (importing registers too).
"""

from __future__ import annotations

from benchmarl.environments import VmasTask

from torchrl_shacpp.benchmarl.algorithms import Shac, ShacConfig, Shacp, ShacpConfig, Shacpp, ShacppConfig
from torchrl_shacpp.benchmarl.callbacks import EarlyStopping, EvaluationInfo, KeepEvaluationHistory
from torchrl_shacpp.benchmarl.configs import experiment_config
from torchrl_shacpp.benchmarl.models import SlotSetModel, SlotSetModelConfig, Transformer, TransformerConfig
from torchrl_shacpp.benchmarl.tasks import (
    CentredVmasTask,
    DifferentiableVmasClass,
    DifferentiableVmasTask,
    DispersionPaperConfig,
    PaperVmasClass,
    PaperVmasTask,
)

ALGORITHMS = {"shac": ShacConfig, "shacp": ShacpConfig, "shacpp": ShacppConfig}
MODELS = {"transformer": TransformerConfig, "slot_set": SlotSetModelConfig}
#: Task presets with the paper's settings (App. A): on this package's scenario, or on VMAS's.
PAPER_TASKS = {"vmas/dispersion_paper": PaperVmasTask.DISPERSION, "vmas/discovery_paper": VmasTask.DISCOVERY}
#: The differentiable-reward VMAS tasks.
DIFFERENTIABLE_TASKS = {f"vmas/{task.name.lower()}_differentiable": task for task in DifferentiableVmasTask}
#: VMAS tasks observing an angle without a cut at its usual value (the same information, rewards and gradients).
CENTRED_TASKS = {f"vmas/{task.name.lower()}": task for task in CentredVmasTask}


def register() -> None:
    """Registers the algorithms, the models and the task presets with BenchMARL and hydra (idempotent)."""
    from benchmarl.algorithms import algorithm_config_registry
    from benchmarl.environments import task_config_registry
    from benchmarl.models import model_config_registry
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, config in ALGORITHMS.items():
        algorithm_config_registry[name] = config
        store.store(name=f"{name}_config", group="algorithm", node=config)
    model_config_registry.update(MODELS)
    task_config_registry.update(PAPER_TASKS)
    task_config_registry.update(DIFFERENTIABLE_TASKS)
    task_config_registry.update(CENTRED_TASKS)
    store.store(name="vmas_dispersion_paper_config", group="task", node=DispersionPaperConfig)


register()

__all__ = [
    "CentredVmasTask",
    "DifferentiableVmasClass",
    "DifferentiableVmasTask",
    "DispersionPaperConfig",
    "EarlyStopping",
    "EvaluationInfo",
    "KeepEvaluationHistory",
    "PaperVmasClass",
    "PaperVmasTask",
    "Shac",
    "ShacConfig",
    "Shacp",
    "ShacpConfig",
    "Shacpp",
    "ShacppConfig",
    "SlotSetModel",
    "SlotSetModelConfig",
    "Transformer",
    "TransformerConfig",
    "experiment_config",
    "register",
]
