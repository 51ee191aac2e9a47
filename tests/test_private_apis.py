"""The private members of BenchMARL and TorchRL this package relies on, where no public API does the job.

Each check fails with a message naming the member, so that an upgrade of BenchMARL or TorchRL that changes one is
caught here, by name, rather than deep inside a training run.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from benchmarl.experiment import Experiment
from benchmarl.experiment.logger import JsonWriter, Logger
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from torchrl.data import LazyTensorStorage, RandomSampler, ReplayBuffer
from torchrl.data.replay_buffers.checkpointers import StorageCheckpointerBase
from torchrl.data.replay_buffers.writers import Writer

from torchrl_shacpp.data import ScatteredTensorStorage


@pytest.mark.parametrize(
    "member, why",
    [
        ("_collection_loop", "EarlyStopping wraps it to end BenchMARL's loop: BenchMARL has no stop signal"),
        ("_save_experiment", "EarlyStopping writes the final checkpoint (checkpoint_at_end) when it stops the run"),
    ],
)
def test_benchmarl_experiment_members(member: str, why: str):
    assert callable(getattr(Experiment, member, None)), f"benchmarl.experiment.Experiment.{member} is gone ({why})"


def test_collection_loop_ends_with_the_save_and_close_early_stopping_repeats():
    """EarlyStopping replays the end of BenchMARL's collection loop (commit, checkpoint at end, close)."""
    source = inspect.getsource(Experiment._collection_loop)
    for call in ("self.logger.commit()", "self._save_experiment()", "self.close()"):
        assert call in source, f"Experiment._collection_loop no longer calls {call}: update EarlyStopping.on_setup"


def test_torchrl_tensor_storage_members():
    """ScatteredTensorStorage subclasses LazyTensorStorage and keeps its private bookkeeping consistent."""
    storage = LazyTensorStorage(4)
    storage.set(torch.arange(2), torch.zeros(2, 3))
    for member in ("_storage", "_len", "_last_cursor", "_rng"):
        assert hasattr(storage, member), f"torchrl LazyTensorStorage.{member} is gone (ScatteredTensorStorage uses it)"
    assert callable(getattr(LazyTensorStorage, "_rand_given_ndim", None)), (
        "torchrl TensorStorage._rand_given_ndim is gone: ScatteredTensorStorage overrides it so that RandomSampler "
        "draws written slots only"
    )
    assert "_rand_given_ndim" in inspect.getsource(RandomSampler.sample), (
        "torchrl RandomSampler.sample no longer draws through storage._rand_given_ndim (ScatteredTensorStorage's hook)"
    )
    assert "_last_cursor" in inspect.getsource(StorageCheckpointerBase), (
        "torchrl's storage checkpointers no longer read storage._last_cursor (ScatteredTensorStorage sets it)"
    )
    assert callable(getattr(Writer, "_empty", None)), "torchrl Writer._empty is gone (StratifiedWriter overrides it)"
    assert "_rng" in Writer.__annotations__, "torchrl Writer._rng is gone (StratifiedWriter draws slots with it)"


def test_random_sampler_draws_only_written_slots_of_a_scattered_storage():
    buffer = ReplayBuffer(storage=ScatteredTensorStorage(100), sampler=RandomSampler(), batch_size=64)
    buffer.storage.set(torch.tensor([3, 97]), torch.tensor([[1.0], [2.0]]))
    assert set(buffer.sample().flatten().tolist()) <= {1.0, 2.0}


def test_benchmarl_json_writer_members():
    """KeepEvaluationHistory (in the comparison and our run) refills a restored run's marl-eval writer
    (Logger.json_writer), whose ``data`` nests ``run_data`` under env / task / algorithm / seed and is written to
    ``path``."""
    writer = JsonWriter(folder="/tmp", name="run.json", algorithm_name="a", task_name="t", environment_name="e", seed=0)
    assert writer.data["e"]["t"]["a"]["seed_0"] is writer.run_data, "benchmarl JsonWriter.data no longer holds run_data"
    assert str(writer.path) == "/tmp/run.json", "benchmarl JsonWriter.path is gone (KeepEvaluationHistory reads it)"
    assert "self.json_writer = JsonWriter(" in inspect.getsource(Logger.__init__), (
        "benchmarl Logger.json_writer is gone (KeepEvaluationHistory refills it)"
    )


def test_benchmarl_config_pickle_order():
    """The comparison's results read an experiment folder's config.pkl in the order Experiment._setup_name dumps it."""
    source = inspect.getsource(Experiment._setup_name)
    dumps = ["self.task,", "self.task.config if", "self.algorithm_config,", "self.model_config,", "self.seed,",
             "self.config,", "self.critic_model_config,"]  # fmt: skip
    positions = [source.find(f"pickle.dump({dump}") for dump in dumps]
    assert -1 not in positions and positions == sorted(positions), (
        "benchmarl Experiment._setup_name no longer pickles task, task config, algorithm, model, seed, experiment and "
        "critic model configs in this order: update torchrl_shacpp.benchmark.runs.load_run"
    )


def test_hydra_basic_sweeper_split_arguments():
    """The comparison lists the grid's jobs with hydra's basic sweeper's cartesian product (hydra._internal); a
    command-line axis replaces the config's (``hydra.sweeper.params`` come first)."""
    overrides = OverridesParser.create().parse_overrides(["a=1,2", "b=x", "a=3,4"])
    assert BasicSweeper.split_arguments(overrides, max_batch_size=None) == [[["a=3", "b=x"], ["a=4", "b=x"]]], (
        "hydra._internal.core_plugins.basic_sweeper.BasicSweeper.split_arguments changed: update "
        "torchrl_shacpp.benchmark.callback.grid_jobs"
    )
