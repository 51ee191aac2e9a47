"""The example script runs every algorithm end to end at tiny sizes and writes its curve."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[1] / "examples" / "train.py"
TINY = [
    "--n-agents", "2", "--num-envs", "8", "--window", "4", "--max-steps", "6", "--eval-envs", "4", "--eval-every", "1",
    "--critic-epochs", "2", "--cache-size", "40", "--train-every", "2", "--model-epochs", "2", "--minibatch", "16",
    "--quiet",
]  # fmt: skip


@pytest.mark.parametrize(
    "algorithm, task, models",
    [("shac", "transport", ()), ("shac", "sampling", ()), ("shacp", "dispersion", ("reward",)),
     ("shacpp", "dispersion", ("world", "reward", "value"))],
)  # fmt: skip
def test_train_writes_a_curve(tmp_path: Path, algorithm: str, task: str, models: tuple[str, ...]):
    command = [sys.executable, str(EXAMPLE), "--algorithm", algorithm, "--task", task, "--frames", "128", *TINY,
               "--out", str(tmp_path)]  # fmt: skip
    subprocess.run(command, check=True, timeout=300)
    with open(tmp_path / "curve.csv") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["frames"]) for row in rows] == [32, 64, 96, 128]
    assert all(row["skipped_actor_steps"] == "0" for row in rows)
    assert all(math.isfinite(float(row["eval_return"])) and float(row["actor_grad_norm"]) > 0 for row in rows)
    # The models first train after window 2 (every 2 windows); before that there is no loss to report.
    for name in models:
        losses = [float(row[f"loss_{name}"]) for row in rows]
        assert math.isnan(losses[0]) and all(math.isfinite(loss) for loss in losses[1:]), (name, losses)
        assert all(row[f"skipped_{name}_steps"] == "0" for row in rows[1:])
    assert (tmp_path / "curve.png").stat().st_size > 0
    assert (tmp_path / "policy.pt").exists()
