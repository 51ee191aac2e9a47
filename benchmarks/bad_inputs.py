"""Every case of the hostile-input probe (``notes/bad-inputs-probe.md``), from the command line and from Python, with
its outcome and a verdict: the table of ``benchmarks/results/bad_inputs.md``.

    python benchmarks/bad_inputs.py [--output benchmarks/results/bad_inputs.md] [--only 9 A2 N1]

Command-line cases run ``python -m benchmarl.run <case> <PROBE>`` (the probe's flags: one iteration of 4 envs x 16
steps, no evaluation, no logger, a fresh ``save_folder``) with ``HYDRA_FULL_ERROR=1``, ``OMP_NUM_THREADS=1``; Python
cases run in this process. Verdicts:

* CLEAR: a misuse fails before training (not inside BenchMARL's collection loop) with a message holding the expected
  phrase (the key and the fix); a warning or a message expected on a run that goes on is there; a fault is survived
  (the run completes, parameters finite, the skip / drop counters set).
* UNCLEAR: it fails, but without the expected phrase.
* WRONG: a misuse is accepted, fails only in training, or a fault ends the run.
* BENCHMARL: BenchMARL's own code handles it before or instead of any code of this package (outcome recorded).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

from benchmarl.algorithms import MappoConfig  # noqa: E402
from faults import CorruptBatch, diverging_agent  # noqa: E402
from tensordict import TensorDict  # noqa: E402
from test_benchmarl import tiny_experiment  # noqa: E402
from test_bad_inputs import actor_loss, all_finite, logged  # noqa: E402
from test_objectives import MULTI_AGENT_KEYS, point_mass_window  # noqa: E402
from toy_env import make_point_mass_env, open_loop_actor, quadratic_critic  # noqa: E402
from vmas.scenarios.transport import Scenario as Transport  # noqa: E402

from torchrl_shacpp.benchmarl import ShacConfig, ShacppConfig, experiment_config  # noqa: E402
from torchrl_shacpp.collectors import WindowCollector  # noqa: E402
from torchrl_shacpp.envs import make_vmas_env  # noqa: E402
from torchrl_shacpp.modules import AxisAttentionWorldModel  # noqa: E402
from torchrl_shacpp.objectives import SHACActorLoss, TDLambdaValueLoss  # noqa: E402
from torchrl_shacpp.optim import FiniteGradientStep  # noqa: E402

#: The probe's flags: one iteration of 4 envs x 16 steps, nothing evaluated or logged.
PROBE = [
    "experiment.max_n_iters=1", "experiment.evaluation=false", "experiment.render=false", "experiment.loggers=[]",
    "experiment.create_json=false", "experiment.on_policy_n_envs_per_worker=4",
    "experiment.on_policy_collected_frames_per_batch=64", "experiment.on_policy_minibatch_size=64",
    "experiment.on_policy_n_minibatch_iters=1",
]  # fmt: skip
EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Exit)): ?(.*)$")


@dataclass
class Outcome:
    verdict: str
    text: str


@dataclass
class Case:
    row: str
    what: str
    run: Callable[[Path], Outcome]


#: The temporary folder of a run of the cases, written ``<tmp>`` in the outcomes.
TMP_ROOT = {"path": ""}


def _short(text: str, limit: int = 320) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    if TMP_ROOT["path"]:
        text = text.replace(TMP_ROOT["path"], "<tmp>")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_message(stderr: str) -> str:
    """The last exception's message in a traceback (hydra's own errors included)."""
    lines = stderr.rstrip().splitlines()
    for index in range(len(lines) - 1, -1, -1):
        match = EXCEPTION_LINE.match(lines[index])
        if match:
            return " ".join([match.group(3), *lines[index + 1 :]]).strip()
    return lines[-1] if lines else ""


def _run(tmp: Path, overrides: list[str], module: str, probe: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "1", "OMP_NUM_THREADS": "1"}
    env.pop("WANDB_MODE", None)
    flags = [*PROBE, f"experiment.save_folder={tmp}"] if probe else []
    command = [sys.executable, "-m", module, *flags, *overrides]  # the case's overrides win
    return subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=900, env=env)


def cli_refuses(*overrides: str, expect: str, module: str = "benchmarl.run", benchmarl: bool = False):
    """A command line that must fail at set-up with ``expect`` in its message. ``benchmarl``: a case that BenchMARL's
    own code handles before ours runs; BENCHMARL when the traceback holds no frame of this package."""

    def run(tmp: Path) -> Outcome:
        result = _run(tmp, [arg.format(tmp=tmp, **RUNS) for arg in overrides], module, probe=True)
        if result.returncode == 0:
            return Outcome("WRONG", "ran without a word")
        message = _error_message(result.stderr)
        frames = [line for line in result.stderr.splitlines() if line.lstrip().startswith("File")]
        ours = any("/torchrl_shacpp/" in frame for frame in frames)
        if benchmarl and not ours:
            return Outcome("BENCHMARL", _short(message))
        if "in _collection_loop" in result.stderr:
            return Outcome("WRONG", "failed in training: " + _short(message))
        return Outcome("CLEAR" if expect in message else "UNCLEAR", _short(message))

    return run


def cli_says(*overrides: str, expect: str, module: str = "benchmarl.run", stream: str = "stderr", probe: bool = True):
    """A command line that must run to its end and print ``expect`` (a warning, a notice)."""

    def run(tmp: Path) -> Outcome:
        result = _run(tmp, list(overrides), module, probe=probe)
        if result.returncode != 0:
            return Outcome("WRONG", "failed: " + _short(_error_message(result.stderr)))
        output = getattr(result, stream)
        found = next((line for line in output.splitlines() if expect in line), None)
        if found is None:
            return Outcome("UNCLEAR", "runs, no word")
        return Outcome("CLEAR", "runs; " + _short(found.split("Warning: ", 1)[-1], 320))

    return run


def results_say(folder: Callable[[Path], Path], expect: str):
    """``python -m torchrl_shacpp.benchmark.results <folder>`` must fail with ``expect``."""

    def run(tmp: Path) -> Outcome:
        result = subprocess.run(
            [sys.executable, "-m", "torchrl_shacpp.benchmark.results", str(folder(tmp))], capture_output=True, text=True
        )
        message = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
        if result.returncode == 0:
            return Outcome("WRONG", "wrote the tables")
        clear = expect in message and "Traceback" not in result.stderr
        return Outcome("CLEAR" if clear else "UNCLEAR", _short(message))

    return run


def python_refuses(make: Callable[[Path], object], expect: str):
    """A Python call that must raise with ``expect`` in its message."""

    def run(tmp: Path) -> Outcome:
        try:
            make(tmp)
        except Exception as error:  # noqa: BLE001 - the outcome is what is recorded
            message = f"{type(error).__name__}: {error}"
            return Outcome("CLEAR" if expect in message else "UNCLEAR", _short(message))
        return Outcome("WRONG", "accepted")

    return run


def survives(check: Callable[[Path], tuple[bool, str]]):
    """A fault that must be survived: ``check`` returns whether it was, and what happened."""

    def run(tmp: Path) -> Outcome:
        try:
            ok, text = check(tmp)
        except Exception as error:  # noqa: BLE001
            return Outcome("WRONG", "ended the run: " + _short(f"{type(error).__name__}: {error}"))
        return Outcome("CLEAR" if ok else "WRONG", _short(text, 400))

    return run


# ---------------------------------------------------------------------------------------------------------------------
# Set-up for the restore and results cases: a SHAC run with a checkpoint, csv scalars, create_json but no evaluation
# (so no JSON), and a MAPPO run with a checkpoint.

RUNS: dict[str, Path] = {}


def make_runs(root: Path) -> None:
    for name, algorithm in (("shac", "shac"), ("mappo", "mappo")):
        folder = root / name
        folder.mkdir(parents=True)
        flags = ["experiment.checkpoint_at_end=true", "experiment.loggers=[csv]", "experiment.create_json=true"]
        result = _run(folder, [f"algorithm={algorithm}", "task=vmas/transport", *flags], "benchmarl.run", probe=True)
        assert result.returncode == 0, result.stderr[-2000:]
        RUNS[name] = folder
        RUNS[f"{name}_checkpoint"] = next(folder.rglob("checkpoint_*.pt"))
    RUNS["garbage"] = root / "garbage.pt"
    RUNS["garbage"].write_text("not a checkpoint")


def _run_folder_with_json(tmp: Path, text: str) -> Path:
    """A BenchMARL experiment folder ``tmp/run`` whose marl-eval JSON ``run.json`` holds ``text``; returns ``tmp``."""
    (tmp / "run").mkdir()
    (tmp / "run" / "config.pkl").write_bytes(b"")
    (tmp / "run" / "run.json").write_text(text)
    return tmp


# ---------------------------------------------------------------------------------------------------------------------
# Python cases


def nan_reward_step(tmp: Path) -> tuple[bool, str]:
    """A NaN reward at one step of a point-mass window: the actor step is skipped, counted, parameters unchanged."""
    window, actor, _, _ = point_mass_window()
    loss = SHACActorLoss(actor, quadratic_critic(0.5), action_bound_coef=0)
    loss.set_keys(**MULTI_AGENT_KEYS)
    step = FiniteGradientStep(torch.optim.Adam(loss.parameters(), lr=0.1), max_grad_norm=1.0)
    before = TensorDict.from_module(actor).clone()
    reward = window["next", "agents", "reward"]
    window["next", "agents", "reward"] = torch.where(torch.arange(8)[:, None, None] == 2, math.nan, 0.0) + reward
    info = step(loss(window)["loss_actor"])
    unchanged = bool((TensorDict.from_module(actor) == before).all())
    return info["skipped"] == 1.0 and step.skipped_steps == 1 and unchanged, (
        f"step skipped: {bool(info['skipped'])}, skipped_steps={step.skipped_steps}, parameters unchanged: {unchanged}"
    )


def _counters(values: dict[str, list[float]]) -> dict[str, float]:
    return {
        key.removeprefix("train/").removeprefix("agents/"): value[-1]
        for key, value in values.items()
        if re.search(r"(skipped|dropped)_\w+|non_finite_envs", key)
    }


def survive_run(experiment_of: Callable[[Path], object], fault=None) -> Callable[[Path], tuple[bool, str]]:
    """Runs the experiment (under ``fault``, a context manager factory); survived when it completes with finite
    parameters, non-finite envs seen and something skipped or dropped."""

    def check(tmp: Path) -> tuple[bool, str]:
        with fault() if fault else contextlib.nullcontext():
            experiment = experiment_of(tmp)
            values = logged(experiment)
            experiment.run()
        counters = _counters(values)
        seen = sum(values.get("train/non_finite_envs", []))
        acted = any(value > 0 for key, value in counters.items() if key != "non_finite_envs")
        finite = all_finite(experiment)
        done = experiment.n_iters_performed == experiment.config.max_n_iters
        summary = ", ".join(f"{key}={value:g}" for key, value in sorted(counters.items()) if value)
        text = f"completed {experiment.n_iters_performed} iterations, parameters finite: {finite}; "
        return done and finite and seen > 0 and acted, text + f"envs with non-finite data: {seen:g}; {summary}"

    return check


def diverging(algorithm: str):
    """N1: VMAS's transport observation diverges (an agent's position becomes NaN) in env 1 at the third step."""
    config = ShacConfig() if algorithm == "shac" else ShacppConfig(model_train_every=2, model_epochs=1, cache_size=200)
    return survive_run(
        lambda tmp: tiny_experiment(
            config, tmp, max_n_iters=3, evaluation=False, collect_with_grad=algorithm == "shac"
        ),
        fault=lambda: diverging_agent(Transport, at_call=4 + 2 * 2 + 1, num_envs=8),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------------
# The cases, in the probe's order

ROOT_ERROR_RUN = ["algorithm=shacpp", "task=vmas/transport"]

CASES = [
    Case("1", "shac on vmas/dispersion", cli_refuses("algorithm=shac", "task=vmas/dispersion",
         expect="shac needs a differentiable reward")),
    Case("1", "shac on vmas/discovery", cli_refuses("algorithm=shac", "task=vmas/discovery",
         expect="shac needs a differentiable reward")),
    Case("2", "shac on pettingzoo/multiwalker", cli_refuses("algorithm=shac", "task=pettingzoo/multiwalker",
         expect="pettingzoo python package was not found")),
    Case("2", "shacpp on pettingzoo/multiwalker", cli_refuses("algorithm=shacpp", "task=pettingzoo/multiwalker",
         expect="pettingzoo python package was not found")),
    Case("2", "shacpp on meltingpot/commons_harvest__open", cli_refuses(
         "algorithm=shacpp", "task=meltingpot/commons_harvest__open",
         expect="meltingpot python package was not found")),
    Case("3", "`experiment.prefer_continuous_actions=false`", cli_refuses(
         *ROOT_ERROR_RUN, "experiment.prefer_continuous_actions=false", expect="needs continuous actions")),
    Case("4", "frames 64 with 6 envs", cli_refuses(
         *ROOT_ERROR_RUN, "experiment.on_policy_n_envs_per_worker=6", expect="is not a multiple of")),
    Case("4", "frames 64 with 0 envs", cli_refuses(
         *ROOT_ERROR_RUN, "experiment.on_policy_n_envs_per_worker=0",
         expect="experiment.on_policy_n_envs_per_worker=0 must be an integer >= 1")),
    Case("5", "frames = 0 (BenchMARL's `ExperimentConfig.validate` divides by it before any code of ours runs)",
         cli_refuses(*ROOT_ERROR_RUN, "experiment.on_policy_collected_frames_per_batch=0", expect="", benchmarl=True)),
    Case("5", "frames = 0 with `experiment.max_n_frames=null` (BenchMARL's validate passes)", cli_refuses(
         *ROOT_ERROR_RUN, "experiment.on_policy_collected_frames_per_batch=0", "experiment.max_n_frames=null",
         expect="experiment.on_policy_collected_frames_per_batch=0 must be an integer >= 1")),
    Case("6", "frames = −64", cli_refuses(*ROOT_ERROR_RUN, "experiment.on_policy_collected_frames_per_batch=-64",
         expect="experiment.on_policy_collected_frames_per_batch=-64 must be an integer >= 1")),
    Case("7", "shac on vmas/sampling, `task.n_agents=0`", cli_refuses(
         "algorithm=shac", "task=vmas/sampling", "task.n_agents=0", expect="No agents passed")),
    Case("7", "shacpp on vmas/dispersion, `task.n_agents=0`", cli_refuses(
         "algorithm=shacpp", "task=vmas/dispersion", "task.n_agents=0", expect="No agents passed")),
    Case("7", "shacpp on vmas/transport, `task.n_agents=0` (VMAS's scenario fails as BenchMARL builds the env)",
         cli_refuses(*ROOT_ERROR_RUN, "task.n_agents=0", expect="", benchmarl=True)),
    Case("8", "`experiment.lr=-0.001`", cli_refuses(*ROOT_ERROR_RUN, "experiment.lr=-0.001",
         expect="experiment.lr=-0.001 must be a finite number > 0")),
    Case("9", "shac, `experiment.gamma=1.5`", cli_refuses("algorithm=shac", "task=vmas/transport",
         "experiment.gamma=1.5", expect="experiment.gamma=1.5 must be a number in [0, 1]")),
    Case("9", "shac, `algorithm.lmbda=1.5`", cli_refuses("algorithm=shac", "task=vmas/transport",
         "algorithm.lmbda=1.5", expect="algorithm.lmbda=1.5 must be a number in [0, 1]")),
    Case("10", "shacpp, `algorithm.lmbda=-0.5`", cli_refuses(*ROOT_ERROR_RUN, "algorithm.lmbda=-0.5",
         expect="algorithm.lmbda=-0.5 must be a number in [0, 1]")),
    Case("11", "`algorithm.action_std=0`", cli_refuses(*ROOT_ERROR_RUN, "algorithm.action_std=0",
         expect="algorithm.action_std=0.0 must be a finite number > 0")),
    Case("11", "`algorithm.action_std=-1`", cli_refuses(*ROOT_ERROR_RUN, "algorithm.action_std=-1",
         expect="algorithm.action_std=-1.0 must be a finite number > 0")),
    Case("12", "shacp, `algorithm.cache_size=5`", cli_refuses("algorithm=shacp", "task=vmas/transport",
         "algorithm.cache_size=5", expect="algorithm.cache_size=5 cannot hold 9 bins")),
    Case("13", "`algorithm.model_epochs=0`", cli_refuses(*ROOT_ERROR_RUN, "algorithm.model_epochs=0",
         expect="algorithm.model_epochs=0 must be an integer >= 1")),
    Case("13", "`algorithm.model_train_every=0`", cli_refuses(*ROOT_ERROR_RUN, "algorithm.model_train_every=0",
         expect="algorithm.model_train_every=0 must be an integer >= 1")),
    Case("14", "`algorithm.model_minibatch_size=0`", cli_refuses(*ROOT_ERROR_RUN, "algorithm.model_minibatch_size=0",
         expect="algorithm.model_minibatch_size=0 must be an integer >= 1")),
    Case("15", "`algorithm.world_num_heads=3`", cli_refuses(*ROOT_ERROR_RUN, "algorithm.world_num_heads=3",
         expect="algorithm.world_num_heads=3 must divide algorithm.world_hidden_size=64")),
    Case("15", "`model=layers/transformer model.num_heads=3`", cli_refuses(
         *ROOT_ERROR_RUN, "model=layers/transformer", "model.num_heads=3",
         expect="model.num_heads=3 must divide model.hidden_size=64")),
    Case("16", "`algorithm.world_checkpoint_chunks=-1`", cli_refuses(*ROOT_ERROR_RUN,
         "algorithm.world_checkpoint_chunks=-1",
         expect="algorithm.world_checkpoint_chunks=-1 must be an integer >= 0")),
    Case("16", "`algorithm.reward_bins=0`", cli_refuses(*ROOT_ERROR_RUN, "algorithm.reward_bins=0",
         expect="algorithm.reward_bins=0 must be an integer >= 1")),
    Case("17", "`algorithm.world_hidden_size=0`", cli_refuses(*ROOT_ERROR_RUN, "algorithm.world_hidden_size=0",
         expect="algorithm.world_hidden_size=0 must be an integer >= 1")),
    Case("18", "shac, `algorithm.actor_max_grad_norm=-1`", cli_refuses("algorithm=shac", "task=vmas/transport",
         "algorithm.actor_max_grad_norm=-1", expect="algorithm.actor_max_grad_norm=-1.0 must be a finite number > 0")),
    Case("19", "`model=layers/gru`", cli_refuses(*ROOT_ERROR_RUN, "model=layers/gru",
         expect="does not support recurrent models")),
    Case("19", "`critic_model=layers/lstm`", cli_refuses(*ROOT_ERROR_RUN, "model@critic_model=layers/lstm",
         expect="does not support recurrent models")),
    Case("20", "`model=layers/gnn`", cli_refuses(*ROOT_ERROR_RUN, "model=layers/gnn", expect="torch_geometric")),
    Case("20", "`critic_model=layers/gnn`", cli_refuses(*ROOT_ERROR_RUN, "model@critic_model=layers/gnn",
         expect="torch_geometric")),
    Case("21", "`restore_file` missing", cli_refuses(*ROOT_ERROR_RUN, "experiment.restore_file={tmp}/missing.pt",
         expect="missing.pt does not exist")),
    Case("22", "restore mappo → shac", cli_refuses(
         "algorithm=shac", "task=vmas/transport", "experiment.restore_file={mappo_checkpoint}",
         expect="was not written by shac, shacp or shacpp")),
    Case("22", "restore shac → shacpp", cli_refuses(
         *ROOT_ERROR_RUN, "experiment.restore_file={shac_checkpoint}", expect="was written by shac, not shacpp")),
    Case("22", "restore shac → mappo (`python -m torchrl_shacpp.benchmarl.run`)", cli_refuses(
         "algorithm=mappo", "task=vmas/transport", "experiment.restore_file={shac_checkpoint}",
         module="torchrl_shacpp.benchmarl.run", expect="was written by shac, not mappo")),
    Case("22", "restore shac → mappo (`python -m benchmarl.run`: BenchMARL's MAPPO loads it)", cli_refuses(
         "algorithm=mappo", "task=vmas/transport", "experiment.restore_file={shac_checkpoint}", expect="",
         benchmarl=True)),
    Case("23", "restore a garbage file", cli_refuses(
         "algorithm=shac", "task=vmas/transport", "experiment.restore_file={garbage}",
         expect="garbage.pt is not a torch checkpoint")),
    Case("23", "restore a shac checkpoint with another `task.n_agents`", cli_refuses(
         "algorithm=shac", "task=vmas/transport", "task.n_agents=3", "experiment.restore_file={shac_checkpoint}",
         expect="does not fit this experiment")),
    Case("24", "`experiment.collect_with_grad=false` (command line)", cli_refuses(
         "algorithm=shac", "task=vmas/transport", "experiment.collect_with_grad=false",
         expect="set experiment.collect_with_grad=true")),
    Case("24", "`collect_with_grad=False` (Python)", python_refuses(
         lambda tmp: tiny_experiment(ShacConfig(), tmp, max_n_iters=1, collect_with_grad=False),
         expect="set experiment.collect_with_grad=true")),
    Case("25", "`algorithm.lambda=0.9`", cli_refuses(*ROOT_ERROR_RUN, "algorithm.lambda=0.9",
         expect="Could not override 'algorithm.lambda'")),
    Case("25", "`algorithm=shacc`", cli_refuses("algorithm=shacc", "task=vmas/transport",
         expect="Could not find 'algorithm/shacc'")),
    Case("26", "`torchrl_shacpp.benchmarl.run` shacpp on vmas/sampling (no paper maximum)", cli_says(
         "algorithm=shacpp", "task=vmas/sampling", module="torchrl_shacpp.benchmarl.run", stream="stdout",
         expect="No early stopping: the paper defines no maximum reward")),
    Case("26", "`torchrl_shacpp.benchmarl.run` mappo on vmas/sampling", cli_says(
         "algorithm=mappo", "task=vmas/sampling", module="torchrl_shacpp.benchmarl.run", stream="stdout",
         expect="No early stopping: the paper defines no maximum reward")),
    Case("27", "`algorithm=shac` without a preset (BenchMARL's base experiment, one iteration)", cli_says(
         "algorithm=shac", "task=vmas/transport", "experiment.max_n_iters=1", "experiment.evaluation=false",
         "experiment.loggers=[]", "experiment.render=false", probe=False,
         expect="keeps the simulator's autograd graph over each whole collection")),
    Case("28", "`save_folder` that does not exist (`python -m torchrl_shacpp.benchmarl.run`)", cli_refuses(
         *ROOT_ERROR_RUN, "experiment.save_folder={tmp}/typo", module="torchrl_shacpp.benchmarl.run",
         expect="is not an existing folder: create it")),
    Case("28", "`save_folder` that does not exist (`python -m benchmarl.run`: BenchMARL makes the run folder first)",
         cli_refuses(*ROOT_ERROR_RUN, "experiment.save_folder={tmp}/typo", expect="", benchmarl=True)),
    Case("—", "`+task.approach_coef=0` on vmas/transport (`python -m torchrl_shacpp.benchmarl.run`)", cli_refuses(
         "algorithm=shac", "task=vmas/transport", "+task.approach_coef=0", module="torchrl_shacpp.benchmarl.run",
         expect="task=vmas/transport_differentiable +task.approach_coef=")),
    Case("—", "`+task.approach_coef=0` on vmas/transport (`python -m benchmarl.run`: BenchMARL's task dataclass)",
         cli_refuses("algorithm=shac", "task=vmas/transport", "+task.approach_coef=0", expect="", benchmarl=True)),
    Case("—", "`+task.approach_blend=-0.05` on vmas/transport_differentiable (a negative width)", cli_refuses(
         "algorithm=shacpp", "task=vmas/transport_differentiable", "+task.approach_blend=-0.05",
         module="torchrl_shacpp.benchmarl.run", expect="approach_blend=-0.05 is not a width")),
    Case("—", "`algorithm.critic_reward=task_reward` on vmas/transport (VMAS's task reports no such info)", cli_refuses(
         "algorithm=shacpp", "task=vmas/transport", "algorithm.critic_reward=task_reward",
         module="torchrl_shacpp.benchmarl.run", expect="(its info: none)")),
    Case("—", "`algorithm.reward_slots=[4,4]` on vmas/dispersion_paper (4 own features, 9 not in slots of 4)",
         cli_refuses("algorithm=shacpp", "task=vmas/dispersion_paper", "algorithm.reward_slots=[4,4]",
                     module="torchrl_shacpp.benchmarl.run", expect="are not a whole number of slots")),
    Case("—", "`model=layers/slot_set` without `model.slots` (the task's observation layout)", cli_refuses(
         "algorithm=mappo", "task=vmas/dispersion_paper", "model=layers/slot_set",
         expect="dispersion's is model.slots=[4,3]")),
    Case("—", "`model@critic_model=layers/slot_set` as MAPPO's centralised critic", cli_refuses(
         "algorithm=mappo", "task=vmas/dispersion_paper", "model=layers/slot_set", "model.slots=[4,3]",
         "model@critic_model=layers/slot_set", "critic_model.slots=[4,3]", expect="it cannot be a centralised critic")),
    Case("29", "`+early_stopping.env_fraction=1.5`", cli_refuses(
         *ROOT_ERROR_RUN, "+early_stopping.env_fraction=1.5", module="torchrl_shacpp.benchmarl.run",
         expect="must be in (0, 1]")),
    Case("30", "early stopping with `loggers=[]`, `create_json=false`", cli_refuses(
         *ROOT_ERROR_RUN, module="torchrl_shacpp.benchmarl.run",
         expect="EarlyStopping decides after each evaluation, and BenchMARL evaluates only with")),
    Case("31", "results on an empty folder", results_say(
         lambda tmp: tmp, expect="No BenchMARL runs and no marl-eval JSON files under")),
    Case("31", "results on a run with only CSV", results_say(
         lambda tmp: RUNS["shac"], expect="BenchMARL writes them at each evaluation")),
    Case("32", "results on a missing path", results_say(lambda tmp: tmp / "missing", expect="missing not found")),
    Case("32", "results on a run with `create_json=true evaluation=false`", results_say(
         lambda tmp: RUNS["shac"], expect="so run with experiment.create_json=true and experiment.evaluation=true")),
    Case("33", "results on a truncated JSON", results_say(
         lambda tmp: _run_folder_with_json(tmp, '{"vmas": {"transport"'), expect="run.json is not valid JSON")),
    Case("33", "results on an unrelated JSON", results_say(
         lambda tmp: _run_folder_with_json(tmp, "[1, 2]"), expect="run.json is not a marl-eval file")),
    Case("A1", "`SHACActorLoss` on a 0-d batch", python_refuses(
         lambda tmp: actor_loss()(point_mass_window()[0][0, 0]), expect="needs a window of transitions")),
    Case("A2", "`SHACActorLoss` on `window.reshape(-1)`", python_refuses(
         lambda tmp: actor_loss()(point_mass_window()[0].reshape(-1)), expect="is not a window")),
    Case("A2", "`SHACActorLoss` on `window[:, 0]`", python_refuses(
         lambda tmp: actor_loss()(point_mass_window()[0][:, 0]), expect="is not a window")),
    Case("A3", "NaN reward at one step", survives(nan_reward_step)),
    Case("A4", "`WindowCollector` window_length 0", python_refuses(
         lambda tmp: WindowCollector(make_point_mass_env(torch.zeros(2, 1, 2), [0, 0], 10),
                                     open_loop_actor(torch.zeros(4, 2, 1, 2)), window_length=0),
         expect="window_length=0 must be an integer >= 1")),
    Case("A4", "`WindowCollector` window_length 2.5", python_refuses(
         lambda tmp: WindowCollector(make_point_mass_env(torch.zeros(2, 1, 2), [0, 0], 10),
                                     open_loop_actor(torch.zeros(4, 2, 1, 2)), window_length=2.5),
         expect="window_length=2.5 must be an integer >= 1")),
    Case("A5", "`make_vmas_env` misspelt task", python_refuses(
         lambda tmp: make_vmas_env("transprot", num_envs=2), expect="Unknown VMAS task 'transprot'; known tasks")),
    Case("A5", "`make_vmas_env` num_envs 0", python_refuses(
         lambda tmp: make_vmas_env("transport", num_envs=0), expect="num_envs=0 must be an integer >= 1")),
    Case("A5", "`make_vmas_env` n_agents 0", python_refuses(
         lambda tmp: make_vmas_env("transport", num_envs=2, n_agents=0), expect="n_agents=0 must be an integer >= 1")),
    Case("A6", "`AxisAttentionWorldModel` num_heads 3", python_refuses(
         lambda tmp: AxisAttentionWorldModel(3, 2, 4, num_heads=3), expect="num_heads=3 must divide hidden_size=64")),
    Case("A7", "`AxisAttentionWorldModel` with 0 agents", python_refuses(
         lambda tmp: AxisAttentionWorldModel(3, 2, 4)(torch.zeros(5, 0, 3), torch.zeros(5, 4, 0, 2)),
         expect="The world model got no agents")),
    Case("A7", "`AxisAttentionWorldModel` with horizon 0", python_refuses(
         lambda tmp: AxisAttentionWorldModel(3, 2, 0), expect="horizon=0 must be an integer >= 1")),
    Case("A8", "`TDLambdaValueLoss(gamma=1.5, lmbda=2)`", python_refuses(
         lambda tmp: TDLambdaValueLoss(quadratic_critic(1.0), gamma=1.5, lmbda=2), expect="gamma=1.5 must be")),
    Case("A8", "`SHACActorLoss(gamma=-1)`", python_refuses(
         lambda tmp: actor_loss(gamma=-1), expect="gamma=-1 must be a number in [0, 1]")),
    Case("A9", '`experiment_config("shacpp_gpu")`', python_refuses(
         lambda tmp: experiment_config("shacpp_gpu"), expect="shacpp_cpu, shacpp_paper")),
    Case("N1", "NaN in VMAS observations (a diverged agent), shac", survives(diverging("shac"))),
    Case("N1", "NaN in VMAS observations (a diverged agent), shacpp", survives(diverging("shacpp"))),
    Case("N2", "NaN, then Inf, in one observation of two collected shacpp windows", survives(survive_run(
         lambda tmp: tiny_experiment(
             ShacppConfig(model_train_every=2, model_epochs=1, cache_size=200), tmp, max_n_iters=4,
             evaluation=False, callbacks=[CorruptBatch((1, 2))],
         )))),
    Case("—", "torchrl's “No target network updater” warning (SHAC, target critic)", survives(
         lambda tmp: _no_target_warning(tmp))),
]  # fmt: skip


def _no_target_warning(tmp: Path) -> tuple[bool, str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny_experiment(ShacConfig(), tmp, max_n_iters=1, collect_with_grad=True, evaluation=False).run()
    found = [w for w in caught if "No target network updater" in str(w.message)]
    return not found, f"{len(found)} warnings “No target network updater has been associated with this loss module”"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "bad_inputs.md")
    parser.add_argument("--only", nargs="*", help="the probe rows to run (e.g. 9 A2 N1); default: all")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = [case for case in CASES if not args.only or case.row in args.only]
    rows, start = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        TMP_ROOT["path"] = root
        if any(case.row in ("22", "23", "31", "32") for case in cases):
            make_runs(Path(root) / "runs")
        for index, case in enumerate(cases):
            tmp = Path(root) / f"case{index}"
            tmp.mkdir()
            outcome = case.run(tmp)
            rows.append((case, outcome))
            print(f"{case.row:>3} {outcome.verdict:9} {case.what}: {outcome.text[:150]}", flush=True)
    verdicts = ("CLEAR", "UNCLEAR", "WRONG", "BENCHMARL")
    counts = {verdict: sum(outcome.verdict == verdict for _, outcome in rows) for verdict in verdicts}
    command = "python benchmarks/bad_inputs.py" + (f" --only {' '.join(args.only)}" if args.only else "")
    lines = [
        "# Hostile inputs and faults: outcomes",
        "",
        f"Command: `{command}` ({time.perf_counter() - start:.0f} s on {os.cpu_count()} CPUs, OMP_NUM_THREADS=1).",
        "",
        "Every case of `notes/bad-inputs-probe.md` (rows numbered as there) and the probe's torchrl warning.",
        f"Command-line cases: `python -m benchmarl.run <case> {' '.join(PROBE)}",
        "experiment.save_folder=<tmp>` (or the module named), with `HYDRA_FULL_ERROR=1`; the others through the Python",
        "API. Verdicts: CLEAR: refused before training with the expected key and fix, or survived (the run completes,",
        "parameters finite, the counters set); UNCLEAR: refused without them; WRONG: accepted, failed in training, or",
        "a fault ended the run; BENCHMARL: BenchMARL's own code handles it before any code of this package runs (no",
        "frame of ours in the traceback).",
        "",
        "Totals: " + ", ".join(f"{verdict} {count}" for verdict, count in counts.items()) + ".",
        "",
        "| # | case | outcome | verdict |",
        "|---|---|---|---|",
        *(f"| {case.row} | {case.what} | {outcome.text} | {outcome.verdict} |" for case, outcome in rows),
        "",
    ]
    args.output.write_text("\n".join(lines))
    print(f"\n{counts} -> {args.output}")


if __name__ == "__main__":
    main()
