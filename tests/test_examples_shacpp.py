"""The SHAC++ example runs end to end at tiny sizes; its world-model adapter matches the one-pass model."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import torch
from tensordict import TensorDict

from torchrl_shacpp.modules import AxisAttentionWorldModel
from torchrl_shacpp.modules import window_world_model

EXAMPLES = Path(__file__).parents[1] / "examples"


def test_window_world_model_splits_the_one_pass_prediction_and_reads_the_first_observation_only():
    torch.manual_seed(0)
    num_envs, horizon, n_agents, obs_dim, action_dim = 3, 5, 2, 4, 2
    model = AxisAttentionWorldModel(obs_dim, action_dim, horizon, num_layers=2)
    module = window_world_model(model)
    observation = torch.randn(num_envs, horizon, n_agents, obs_dim)
    action = torch.randn(num_envs, horizon, n_agents, action_dim, requires_grad=True)
    window = TensorDict(
        {"agents": {"observation": observation, "action": action}}, batch_size=[num_envs, horizon]
    ).refine_names(None, "time")

    predicted = module(window.copy())
    expected = model(observation[:, 0], action)  # [B, h + 1, n, o]
    torch.testing.assert_close(predicted["agents", "observation"], expected[:, :-1])
    torch.testing.assert_close(predicted["next", "agents", "observation"], expected[:, 1:])
    assert predicted.batch_size == window.batch_size
    # Later observations are not inputs; the actions carry the gradient.
    window["agents", "observation"][:, 1:] = torch.randn(num_envs, horizon - 1, n_agents, obs_dim)
    torch.testing.assert_close(module(window.copy())["next", "agents", "observation"], expected[:, 1:])
    predicted["next", "agents", "observation"].sum().backward()
    assert action.grad is not None and action.grad.abs().sum() > 0


def test_train_shacpp_writes_a_curve_with_the_model_losses(tmp_path: Path):
    command = [
        sys.executable, str(EXAMPLES / "train_shacpp.py"), "--task", "dispersion", "--n-agents", "2",
        "--num-envs", "8", "--window", "4", "--frames", "128", "--max-steps", "6", "--eval-envs", "4",
        "--eval-every", "1", "--cache-size", "40", "--world-bins", "5", "--reward-bins", "3", "--value-bins", "3",
        "--train-every", "2", "--model-epochs", "2", "--minibatch", "16", "--threads", "1", "--quiet",
        "--out", str(tmp_path),
    ]  # fmt: skip
    subprocess.run(command, check=True, timeout=300)
    with open(tmp_path / "curve.csv") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["frames"]) for row in rows] == [32, 64, 96, 128]
    # The models first train after window 2 (every 2 windows); before that there is no loss to report.
    for name in ("world", "reward", "value"):
        losses = [float(row[f"loss_{name}"]) for row in rows]
        assert math.isnan(losses[0]) and all(math.isfinite(loss) for loss in losses[1:]), (name, losses)
        assert all(row[f"skipped_{name}_steps"] == "0" for row in rows)
    assert all(row["skipped_actor_steps"] == "0" for row in rows)
    assert all(math.isfinite(float(row["eval_return"])) for row in rows)
    assert all(float(row["actor_grad_norm"]) > 0 for row in rows)
    assert (tmp_path / "curve.png").stat().st_size > 0
    assert (tmp_path / "policy.pt").exists()
