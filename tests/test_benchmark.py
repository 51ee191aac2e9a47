"""The paper's comparison (``python -m torchrl_shacpp.benchmark``): the grid through a parallel launcher, resume, the
training protocol each algorithm gets, the skip rules, and the tables and figures on runs with known returns."""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import pytest
from benchmarl.algorithms import MappoConfig
from benchmarl.environments import VmasTask
from benchmarl.experiment import ExperimentConfig
from benchmarl.models import MlpConfig
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from test_benchmarl import TINY, benchmarl_run

from torchrl_shacpp.benchmark.callback import folder_collision
from torchrl_shacpp.benchmark.figures import figure1
from torchrl_shacpp.benchmark.grid import RunSpec, align_to_collections, run_overrides, skip_reason
from torchrl_shacpp.benchmark.records import RECORD
from torchrl_shacpp.benchmark.runs import load_runs
from torchrl_shacpp.benchmark.stats import mann_whitney_exact
from torchrl_shacpp.benchmark.tables import normalised_markdown, normalised_table, raw_table
from torchrl_shacpp.benchmarl import PaperVmasTask, ShacppConfig, TransformerConfig, experiment_config
from torchrl_shacpp.benchmarl.configs import CONFIG_DIR
from torchrl_shacpp.benchmarl.run import BENCHMARL_CONFIGS

# Windows of 8 envs x 8 steps, 3 of them, a checkpoint after each; evaluation at every window on 4 envs.
TINY_GRID = [
    *(override for override in TINY if not override.startswith("task.n_agents")),
    "experiment.max_n_frames=192", "experiment.checkpoint_interval=64", "task=vmas/dispersion_paper", "task.n_agents=1",
    "model=layers/mlp",
]  # fmt: skip


def comparison(tmp_path: Path, *overrides: str):
    """Runs the comparison's multirun into ``tmp_path/cmp`` at tiny sizes; returns the completed process."""
    return benchmarl_run(
        tmp_path, *TINY_GRID, f"hydra.sweep.dir={tmp_path / 'cmp'}", *overrides, module="torchrl_shacpp.benchmark",
        multirun=True,
    )  # fmt: skip


def started(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("[comparison] start")]


def test_grid_runs_in_parallel_and_resumes(tmp_path: Path):
    """2 algorithms x 2 seeds through joblib's 2 workers, then the same grid with a third seed: the finished runs are
    skipped, the new ones run, and a run interrupted after its second checkpoint restarts from it with its earlier
    evaluations kept."""
    first = comparison(
        tmp_path, "algorithm=shacpp,mappo", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert len(started(first.stdout)) == 4 and "runs finished 4/4, left 0" in first.stdout
    results = tmp_path / "cmp"
    with open(results / "raw.csv") as file:
        rows = list(csv.DictReader(file))
    assert [(row["algorithm"], row["seeds"], row["frames"]) for row in rows] == [
        ("mappo", "2", "192.0"), ("shacpp", "2", "192.0")
    ]  # fmt: skip
    assert (results / "table1.md").read_text().startswith("| task | n_agents | mlp mappo | mlp shacpp |")
    assert (results / "figure1.png").stat().st_size > 0 and (results / "figure2.png").stat().st_size > 0

    interrupted = results / "runs/vmas/dispersion_paper/n1/shacpp/mlp/seed1"
    (experiment,) = [path.parent for path in interrupted.glob("*/config.pkl")]
    (experiment / "checkpoints/checkpoint_192.pt").unlink()
    record = json.loads((interrupted / RECORD).read_text())
    (interrupted / RECORD).write_text(json.dumps({**record, "status": "running"}))

    second = comparison(tmp_path, "algorithm=shacpp,mappo", "seed=0,1,2")
    assert second.returncode == 0, second.stderr[-3000:]
    assert sorted(line.split(" ", 2)[2] for line in started(second.stdout)) == [
        "vmas/dispersion_paper n=1 mappo mlp seed=2",
        "vmas/dispersion_paper n=1 shacpp mlp seed=1 from checkpoint_128.pt",
        "vmas/dispersion_paper n=1 shacpp mlp seed=2",
    ]  # fmt: skip
    assert second.stdout.count("(in an earlier invocation)") == 3
    steps = json.loads((experiment / f"{experiment.name}.json").read_text())["vmas"]["dispersion"]["shacpp"]["seed_1"]
    counts = {key: step["step_count"] for key, step in steps.items() if key.startswith("step_")}
    assert counts == {"step_1": 64, "step_2": 128, "step_3": 192}  # BenchMARL numbers them frames // interval


def test_a_differentiable_scenario_setting_on_the_vmas_task_is_refused_before_the_grid_loads_it(tmp_path: Path):
    result = comparison(tmp_path, "algorithm=shac", "task=vmas/transport", "task.n_agents=1", "+task.approach_coef=0")
    assert result.returncode != 0 and "task=vmas/transport_differentiable +task.approach_coef=" in result.stderr


def compose_comparison(*overrides: str):
    with initialize_config_dir(config_dir=BENCHMARL_CONFIGS, version_base=None):
        return compose(config_name="comparison", overrides=["task=vmas/transport", *overrides])


ALGORITHMS = ("shacpp", "shac", "mappo")


@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_ours_train_under_their_preset_mappo_under_benchmarl_defaults_all_evaluated_alike(scale: str):
    base, ours_preset = ExperimentConfig.get_from_yaml(), experiment_config(f"shacpp_{scale}")
    shared = ("max_n_frames", "evaluation_interval", "evaluation_episodes", "checkpoint_interval", "create_json")
    configs = {name: compose_comparison(f"algorithm={name}", f"benchmark={scale}") for name in ALGORITHMS}
    for name, config in configs.items():
        preset = base if name == "mappo" else ours_preset
        for key in ("lr", "on_policy_n_envs_per_worker", "on_policy_collected_frames_per_batch", "polyak_tau"):
            assert config.experiment[key] == getattr(preset, key), (name, key)
        for key in shared:
            assert config.experiment[key] == configs["mappo"].experiment[key]
        assert config.experiment.loggers == ["csv"] and config.experiment.wandb_extra_kwargs == {"offline": True}
    assert configs["shac"].experiment.collect_with_grad and not configs["shacpp"].experiment.collect_with_grad
    max_steps = 512 if scale == "paper" else VmasTask.TRANSPORT.get_from_yaml().config["max_steps"]
    assert all(config.task.max_steps == max_steps for config in configs.values())
    transformer = compose_comparison("algorithm=mappo", "model=layers/transformer")
    assert transformer.model.name == transformer.critic_model.name == "transformer"


def test_each_run_rounds_the_shared_intervals_to_its_collections():
    mappo = OmegaConf.create(
        {"on_policy_collected_frames_per_batch": 6000, "evaluation_interval": 10_240, "checkpoint_interval": 51_200,
         "max_n_frames": 256_000}
    )  # fmt: skip
    notes = align_to_collections(mappo, on_policy=True)
    assert (mappo.evaluation_interval, mappo.checkpoint_interval, mappo.max_n_frames) == (12_000, 54_000, 258_000)
    assert notes[0] == "experiment.evaluation_interval=12,000 (asked 10,240: collections of 6,000 frames)"
    ours = OmegaConf.create({**mappo, "on_policy_collected_frames_per_batch": 256, "evaluation_interval": 10_240})
    ours.checkpoint_interval = 0
    ours.max_n_frames = 256_000
    assert not align_to_collections(ours, on_policy=True) and ours.evaluation_interval == 10_240


@pytest.mark.parametrize(
    "algorithm, task, n_agents, model, architectures, reason",
    [
        ("shac", "vmas/dispersion_paper", 3, "mlp", "table", "shac needs a differentiable reward"),
        ("shac", "vmas/transport", 3, "mlp", "table", None),
        ("shacp", "vmas/dispersion_paper", 3, "mlp", "table", None),
        ("shacpp", "vmas/transport", 1, "transformer", "table", "runs the transformer for n > 1 only"),
        ("mappo", "vmas/transport", 3, "mlp", "figure", "the paper's Fig. 1 runs the MLP for n = 1 only"),
        ("mappo", "vmas/transport", 3, "mlp", "all", None),
    ],
)  # fmt: skip
def test_skip_rules(algorithm: str, task: str, n_agents: int, model: str, architectures: str, reason: str | None):
    config = compose_comparison(
        f"algorithm={algorithm}", f"task={task}", f"task.n_agents={n_agents}", f"model=layers/{model}",
        f"grid.architectures={architectures}",
    )  # fmt: skip
    said = skip_reason(config, RunSpec(task, n_agents, model, algorithm, 0, ()))
    assert said is None if reason is None else reason in said


def synthetic_run(
    folder: Path, algorithm_config, task, n_agents: int, model_config, seed: int, returns: list[float]
) -> Path:
    """A BenchMARL experiment folder as BenchMARL writes it (``config.pkl``, the marl-eval JSON), with one evaluation
    per 256 frames returning ``returns`` (a list per evaluation: one value per episode)."""
    task = task.get_from_yaml()
    task.config["n_agents"] = n_agents
    folder.mkdir(parents=True)
    with open(folder / "config.pkl", "wb") as file:
        experiment = experiment_config("shacpp_cpu")
        for item in (task, task.config, algorithm_config, model_config, seed, experiment, model_config):
            pickle.dump(item, file)
    steps = {f"step_{i}": {"step_count": 256 * (i + 1), "return": values} for i, values in enumerate(returns)}
    name = algorithm_config.associated_class().__name__.lower()
    (folder / f"{folder.name}.json").write_text(
        json.dumps({"vmas": {task.name.lower(): {name: {f"seed_{seed}": {"absolute_metrics": {}, **steps}}}}})
    )
    return folder


def test_table1_normalises_each_row_by_its_best_model(tmp_path: Path):
    """Known answer: transport n=3, mean last returns over seeds MAPPO 2, SHAC++ 4 (MLP) and 8 (transformer) give
    0.25, 0.5, 1; dispersion n=1 (MLP only) 0.5 and 1; a row whose best is negative is n/a. The JSON files of the two
    SHAC++ transport runs have the same env / task / algorithm / seed keys: each run is read on its own."""
    mappo, shacpp = MappoConfig.get_from_yaml(), ShacppConfig()
    mlp, transformer = MlpConfig.get_from_yaml(), TransformerConfig()
    transport = VmasTask.TRANSPORT
    runs = [
        (mappo, transport, 3, mlp, 0, [[0.0], [1.0, 1.0]]), (mappo, transport, 3, mlp, 1, [[3.0, 3.0]]),
        (shacpp, transport, 3, mlp, 0, [[9.0], [4.0]]), (shacpp, transport, 3, transformer, 0, [[8.0]]),
        (mappo, PaperVmasTask.DISPERSION, 1, mlp, 0, [[0.5]]), (shacpp, PaperVmasTask.DISPERSION, 1, mlp, 0, [[1.0]]),
        (mappo, VmasTask.SAMPLING, 1, mlp, 0, [[-2.0]]), (shacpp, VmasTask.SAMPLING, 1, mlp, 0, [[-1.0]]),
    ]  # fmt: skip
    for index, run in enumerate(runs):
        synthetic_run(tmp_path / f"run{index}" / f"experiment{index}", *run)
    loaded = load_runs(tmp_path)
    header, rows = normalised_table(loaded)
    assert header == ["task", "n_agents", "mlp mappo", "mlp shacpp", "transformer shacpp"]
    assert rows[0] == ["vmas/dispersion", 1, 0.5, 1.0, None] and rows[2] == ["vmas/transport", 3, 0.25, 0.5, 1.0]
    assert rows[1][:2] == ["vmas/sampling", 1] and all(value != value for value in rows[1][2:4])
    assert normalised_markdown(header, rows).splitlines()[4] == "| vmas/transport | 3 | 0.25 | 0.50 | **1.00** |"
    raw_header, raw_rows = raw_table(loaded)
    transport_shacpp_mlp = dict(zip(raw_header, raw_rows[-2]))
    assert (transport_shacpp_mlp["best_return"], transport_shacpp_mlp["frames"]) == (9.0, 512)
    assert figure1(loaded, tmp_path / "figure1.png") and (tmp_path / "figure1.png").stat().st_size > 0


def test_table1_a_non_finite_return_leaves_its_row_normalised_by_the_finite_ones(tmp_path: Path):
    """A configuration whose last evaluation is NaN gets n/a; the row's other cells are still divided by their best
    (``max`` over a list starting with NaN would make the whole row NaN)."""
    nan = float("nan")
    mlp = MlpConfig.get_from_yaml()
    synthetic_run(tmp_path / "a" / "a", MappoConfig.get_from_yaml(), VmasTask.TRANSPORT, 3, mlp, 0, [[1.0], [nan]])
    synthetic_run(tmp_path / "b" / "b", ShacppConfig(), VmasTask.TRANSPORT, 3, mlp, 0, [[2.0], [4.0]])
    loaded = load_runs(tmp_path)
    _, (row,) = normalised_table(loaded)
    assert row[:2] == ["vmas/transport", 3] and row[2] != row[2] and row[3] == 1.0
    assert sorted(run.best_return for run in loaded) == [1.0, 4.0]


def test_a_run_is_its_overrides_without_the_grid_rules():
    """A comparison folder made under one ``grid.architectures`` resumes under another: the rule decides which grid
    points run, not what a run is."""
    overrides = ["seed=0", "grid.architectures=all", "algorithm=shacpp", "+grid.extra=1"]
    assert run_overrides(overrides) == ("algorithm=shacpp", "seed=0")


def test_a_grid_whose_jobs_would_share_a_run_folder_is_refused():
    """The run folder's name holds task, n_agents, algorithm, model and seed: a sweep over another key is refused
    before any job starts, unless that key is added to the folder's name."""
    subdir = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "comparison.yaml").hydra.sweep, resolve=False)["subdir"]
    grid = [run_overrides(["algorithm=shacpp", "seed=0", "grid.architectures=all"]), ("algorithm=mappo", "seed=0")]
    assert folder_collision(grid, subdir) is None
    lrs = [("algorithm=shacpp", "experiment.lr=0.001", "seed=0"), ("algorithm=shacpp", "experiment.lr=0.003", "seed=0")]
    said = folder_collision(lrs, subdir)
    assert "differ only in experiment.lr=0.001 experiment.lr=0.003" in said and "hydra.sweep.subdir" in said
    assert folder_collision(lrs, subdir + "/lr${experiment.lr}") is None


def test_exact_rank_test_matches_closed_forms():
    """Complete separation of 6 seeds from 6 is 2 of the C(12, 6) = 924 splits; one value below two is 2 of 3 (U = 2
    and U = 0 are equally far from 1); swapping the samples mirrors U and keeps p; a run that never reached the target
    (inf) ranks last."""
    assert mann_whitney_exact([1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]) == (36, pytest.approx(2 / 924))
    assert mann_whitney_exact([1], [2, 3]) == (2, pytest.approx(2 / 3))
    u, p = mann_whitney_exact([41, 51, 51, 61], [72, 50, float("inf")])
    assert (u, p) == (9, pytest.approx(mann_whitney_exact([72, 50, float("inf")], [41, 51, 51, 61])[1]))
    assert mann_whitney_exact([72, 50, float("inf")], [41, 51, 51, 61])[0] == 12 - 9
    with pytest.raises(ValueError, match="too many splits"):
        mann_whitney_exact(list(range(15)), list(range(15)))
