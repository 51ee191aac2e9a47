"""The example scripts run end to end at tiny sizes and write their curves."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.mark.parametrize("task", ["transport", "sampling"])
def test_train_shac_writes_a_curve(tmp_path: Path, task: str):
    command = [
        sys.executable, str(EXAMPLES / "train_shac.py"), "--task", task, "--n-agents", "2", "--num-envs", "8",
        "--window", "4", "--frames", "96", "--max-steps", "6", "--eval-envs", "4", "--eval-every", "1",
        "--critic-epochs", "2", "--threads", "1", "--quiet", "--out", str(tmp_path),
    ]  # fmt: skip
    subprocess.run(command, check=True, timeout=300)
    with open(tmp_path / "curve.csv") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["frames"]) for row in rows] == [32, 64, 96]
    assert all(row["skipped_actor_steps"] == "0" for row in rows)
    assert (tmp_path / "curve.png").stat().st_size > 0
    assert (tmp_path / "policy.pt").exists()
