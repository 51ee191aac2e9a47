"""The world model's window adapter matches the one-pass model."""

from __future__ import annotations

import torch
from tensordict import TensorDict

from torchrl_shacpp.modules import AxisAttentionWorldModel, window_world_model


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
