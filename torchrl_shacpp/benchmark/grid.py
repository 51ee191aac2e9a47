"""The comparison's grid: which run a hydra job is, which runs the grid skips and why, and the intervals each run
rounds to its own collection size.

A job is one point of the grid (task x n_agents x model x algorithm x seed, the sweep of ``comparison.yaml``); the
grid holds points that cannot run, and skips them with a one-line reason instead of failing the multirun:

* an algorithm that refuses the task at set-up (SHAC and SHAC+ outside VMAS, SHAC on a reward without a gradient:
  ``task_refusal`` of the algorithm class, the same message the set-up raises);
* a model the paper does not run at that number of agents (``grid.architectures``: Table 1 runs the transformer for
  n > 1 only, Fig. 1 also runs the MLP for n = 1 only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from benchmarl.hydra_config import (
    load_algorithm_config_from_hydra,
    load_model_config_from_hydra,
    load_task_config_from_hydra,
)
from benchmarl.models.common import ModelConfig
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

#: ``grid.architectures``: the models each rule skips, as (model name, predicate on n_agents, reason).
ARCHITECTURE_RULES: dict[str, list[tuple[str, Callable[[int], bool], str]]] = {
    "table": [("transformer", lambda n: n == 1, "the paper's Table 1 runs the transformer for n > 1 only")],
    "figure": [
        ("transformer", lambda n: n == 1, "the paper's Fig. 1 runs the transformer for n > 1 only"),
        ("mlp", lambda n: n > 1, "the paper's Fig. 1 runs the MLP for n = 1 only"),
    ],
    "all": [],
}


@dataclass(frozen=True)
class RunSpec:
    """One run of the comparison: its grid point and its complete override list (what makes it this run)."""

    task: str
    n_agents: int | None
    model: str
    algorithm: str
    seed: int
    overrides: tuple[str, ...]

    @classmethod
    def from_hydra(cls, cfg: DictConfig) -> RunSpec:
        """The run of the current hydra job (``cfg`` its composed config)."""
        hydra = HydraConfig.get()
        return cls(
            task=hydra.runtime.choices.task,
            n_agents=cfg.task.get("n_agents"),
            model=architecture(*(model_name(load_model_config_from_hydra(cfg[k])) for k in ("model", "critic_model"))),
            algorithm=hydra.runtime.choices.algorithm,
            seed=cfg.seed,
            overrides=run_overrides(hydra.overrides.task),
        )

    @property
    def configuration(self) -> str:
        """The run without its seed: ``vmas/transport n=3 shacpp transformer``."""
        return f"{self.task} n={self.n_agents} {self.algorithm} {self.model}"

    def __str__(self) -> str:
        return f"{self.configuration} seed={self.seed}"


def run_overrides(overrides: list[str]) -> tuple[str, ...]:
    """The overrides that make a run, sorted: a job's command line without ``grid.*``, which decides which grid
    points run, not what a run does (a folder made under ``grid.architectures=table`` resumes under ``all``)."""
    return tuple(sorted(o for o in overrides if not o.lstrip("+~").startswith("grid.")))


def model_name(config: ModelConfig) -> str:
    """A model's name in the comparison, from its config class: ``mlp``, ``transformer``, ``sequencemodel``."""
    return type(config).__name__.lower().removesuffix("config")


def architecture(policy: str, critic: str) -> str:
    """The architecture's name from the policy's and the critic's model names (``mlp``, ``transformer``): the
    policy's, and the critic's when it differs."""
    return policy if critic == policy else f"{policy}+{critic}-critic"


def skip_reason(cfg: DictConfig, spec: RunSpec) -> str | None:
    """Why the grid skips ``spec`` (None if it runs): the algorithm refuses the task, or ``grid.architectures`` does
    not run this model at this number of agents."""
    rules = cfg.grid.architectures
    if rules not in ARCHITECTURE_RULES:
        raise ValueError(f"grid.architectures={rules} is not one of {', '.join(ARCHITECTURE_RULES)}.")
    for model, applies, reason in ARCHITECTURE_RULES[rules]:
        if spec.model == model and spec.n_agents is not None and applies(spec.n_agents):
            return f"{reason} (grid.architectures={rules})"
    algorithm = load_algorithm_config_from_hydra(cfg.algorithm).associated_class()
    task_refusal = getattr(algorithm, "task_refusal", None)
    return task_refusal(load_task_config_from_hydra(cfg.task, spec.task)) if task_refusal else None


def align_to_collections(experiment: DictConfig, on_policy: bool) -> list[str]:
    """Rounds the intervals of ``experiment`` (in frames) to the nearest multiple of the run's collection, as
    BenchMARL requires: the evaluation interval, the checkpoint interval (when on) and the frame budget. One scale
    then gives every algorithm the same evaluation and budget, as close as its collection size allows.

    Returns:
        one line per changed value, saying what was asked and what the run uses.
    """
    prefix = "on_policy" if on_policy else "off_policy"
    collection = experiment[f"{prefix}_collected_frames_per_batch"]
    notes = []
    for key in ("evaluation_interval", "checkpoint_interval", "max_n_frames"):
        asked = experiment[key]
        if not asked:  # no checkpoints (0), or a budget in iterations (null)
            continue
        aligned = max(1, round(asked / collection)) * collection
        if aligned != asked:
            experiment[key] = aligned
            notes.append(f"experiment.{key}={aligned:,} (asked {asked:,}: collections of {collection:,} frames)")
    return notes
