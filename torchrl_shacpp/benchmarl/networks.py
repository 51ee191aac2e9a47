"""The networks of the SHAC family, built from a BenchMARL experiment's specs and model configs."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from benchmarl.algorithms.common import Algorithm
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from torchrl.data import Composite, Unbounded
from torchrl.modules import ProbabilisticActor

from torchrl_shacpp.modules import (
    AxisAttentionWorldModel,
    SlotSet,
    SlotSumReward,
    PeriodicFeatures,
    TransitionWorldModel,
    gaussian_actor,
    spliced_world_model,
    transition_world_model,
    window_world_model,
)


def group_shape(algorithm: Algorithm, group: str) -> tuple[int, int]:
    """The group's number of agents and per-agent action features."""
    return len(algorithm.group_map[group]), algorithm.action_spec[group, "action"].shape[-1]


def policy(
    algorithm: Algorithm, group: str, *, action_std: float, learn_std: bool, clamp: bool = True,
    clamped_mean: bool = False,
) -> ProbabilisticActor:
    r"""The group's Gaussian policy :math:`\mathcal N(\mu_\theta(o), \sigma^2)`, its samples clamped to the action box:
    :math:`\mu_\theta` is the experiment's ``model`` config, per agent (``share_policy_params`` as in BenchMARL);
    ``clamp=False`` leaves the samples as drawn (the simulator still clamps them). The deterministic action is
    :func:`~torchrl_shacpp.modules.gaussian_actor`'s (``clamped_mean``)."""
    n_agents, action_dim = group_shape(algorithm, group)
    loc_model = algorithm.model_config.get_model(
        input_spec=Composite({group: algorithm.observation_spec[group].clone().to(algorithm.device)}),
        output_spec=Composite({group: Composite({"loc": Unbounded(shape=(n_agents, action_dim))}, shape=(n_agents,))}),
        agent_group=group,
        input_has_agent_dim=True,
        n_agents=n_agents,
        centralised=False,
        share_params=algorithm.experiment_config.share_policy_params,
        device=algorithm.device,
        action_spec=algorithm.action_spec,
    )
    return gaussian_actor(
        loc_model,
        action_dim=action_dim,
        loc_key=(group, "loc"),
        scale_key=(group, "scale"),
        action_key=(group, "action"),
        action_std=action_std,
        learn_std=learn_std,
        spec=algorithm.action_spec[group, "action"],
        clamp=clamp,
        clamped_mean=clamped_mean,
    ).to(algorithm.device)


def _broadcast_to_agents(value: torch.Tensor, n_agents: int) -> torch.Tensor:
    return value.unsqueeze(-2).expand(*value.shape[:-1], n_agents, value.shape[-1])


def _per_agent_scalar(group: str, n_agents: int, key: str) -> Composite:
    return Composite({group: Composite({key: Unbounded(shape=(n_agents, 1))}, shape=(n_agents,))})


def critic_model(
    algorithm: Algorithm,
    group: str,
    input_spec: Composite,
    output_spec: Composite,
    *,
    input_has_agent_dim: bool,
    centralised: bool,
    share_params: bool,
) -> TensorDictModuleBase:
    """The experiment's ``critic_model`` config built for the group, on its device."""
    return algorithm.critic_model_config.get_model(
        input_spec=input_spec,
        output_spec=output_spec,
        agent_group=group,
        input_has_agent_dim=input_has_agent_dim,
        n_agents=group_shape(algorithm, group)[0],
        centralised=centralised,
        share_params=share_params,
        device=algorithm.device,
        action_spec=algorithm.action_spec,
    )


def centralised_model(
    algorithm: Algorithm,
    group: str,
    input_spec: Composite,
    *,
    input_has_agent_dim: bool,
    out_key: str,
    share_params: bool,
) -> TensorDictModuleBase:
    """A ``critic_model`` network over all agents' inputs writing ``(group, out_key)`` per agent, ``[n, 1]``.

    With ``share_params`` it is one network whose pooled output is broadcast to the agents (MAPPO's shared critic);
    otherwise one output per agent.
    """
    n_agents, _ = group_shape(algorithm, group)
    if share_params:
        output_spec = Composite({out_key: Unbounded(shape=(1,))})
    else:
        output_spec = _per_agent_scalar(group, n_agents, out_key)
    model = critic_model(
        algorithm, group, input_spec, output_spec, input_has_agent_dim=input_has_agent_dim, centralised=True,
        share_params=share_params,
    )  # fmt: skip
    if not share_params:
        return model
    broadcast = TensorDictModule(
        functools.partial(_broadcast_to_agents, n_agents=n_agents), in_keys=[out_key], out_keys=[(group, out_key)]
    )
    return TensorDictSequential(model, broadcast)


def per_agent_model(
    algorithm: Algorithm, group: str, input_spec: Composite, *, out_key: str, share_params: bool
) -> TensorDictModuleBase:
    """A ``critic_model`` network writing ``(group, out_key)`` per agent, ``[n, 1]``, each from its own agent's inputs
    (one network for all agents with ``share_params``)."""
    output_spec = _per_agent_scalar(group, group_shape(algorithm, group)[0], out_key)
    return critic_model(
        algorithm, group, input_spec, output_spec, input_has_agent_dim=True, centralised=False,
        share_params=share_params,
    )  # fmt: skip


def critic(
    algorithm: Algorithm, group: str, *, share_params: bool, centralised: bool, slots: Sequence[int] | None = None
) -> TensorDictModuleBase:
    """The critic, per agent: centralised, :math:`V(s)` (or :math:`V(o_1, ..., o_n)` without a global state);
    otherwise each agent's :math:`V(o^i)` (IPPO's), one network for all agents with ``share_params``; with ``slots``
    (``[own_features, slot_features]``, not centralised) :class:`~torchrl_shacpp.modules.SlotSet`."""
    if slots is not None:
        network = SlotSet(*slots, group_shape(algorithm, group)[0], share_params=share_params)
        return TensorDictModule(
            network.to(algorithm.device), in_keys=[(group, "observation")], out_keys=[(group, "state_value")]
        )
    observation = Composite({group: algorithm.observation_spec[group].clone().to(algorithm.device)})
    if not centralised:
        return per_agent_model(algorithm, group, observation, out_key="state_value", share_params=share_params)
    if algorithm.state_spec is not None:
        spec, has_agent_dim = algorithm.state_spec, False
    else:
        spec, has_agent_dim = observation, True
    return centralised_model(
        algorithm, group, spec, input_has_agent_dim=has_agent_dim, out_key="state_value", share_params=share_params
    )


def reward_model(
    algorithm: Algorithm, group: str, *, uses_next_observation: bool, share_params: bool, centralised: bool,
    slots: Sequence[int] | None = None,
) -> TensorDictModuleBase:
    r""":math:`R_\theta(o_t, a_t)` per agent (or :math:`R_\theta(o_t, a_t, o_{t+1})`), a ``critic_model`` network.

    ``centralised``: over all agents' transitions (with ``share_params``, one pooled output broadcast to the agents);
    otherwise each agent's reward from its own transition, :math:`R_\theta(o^i_t, a^i_t)` (one network for all
    agents with ``share_params``). ``slots`` (``[own_features, slot_features]``, per agent only): each agent's sum over
    its observation's entity slots, :class:`~torchrl_shacpp.modules.SlotSumReward`."""
    if slots is not None:
        return _slot_sum_reward_model(
            algorithm, group, slots, uses_next_observation=uses_next_observation, share_params=share_params
        )
    observation = algorithm.observation_spec[group, "observation"].clone().to(algorithm.device)
    n_agents, _ = group_shape(algorithm, group)
    action = algorithm.action_spec[group, "action"].clone().to(algorithm.device)
    transition = Composite({group: Composite({"observation": observation, "action": action}, shape=(n_agents,))})
    if uses_next_observation:
        transition["next"] = Composite({group: Composite({"observation": observation.clone()}, shape=(n_agents,))})
    if centralised:
        return centralised_model(
            algorithm, group, transition, input_has_agent_dim=True, out_key="predicted_reward",
            share_params=share_params,
        )  # fmt: skip
    return per_agent_model(algorithm, group, transition, out_key="predicted_reward", share_params=share_params)


def _slot_sum_reward_model(
    algorithm: Algorithm, group: str, slots: Sequence[int], *, uses_next_observation: bool, share_params: bool
) -> TensorDictModule:
    """:class:`~torchrl_shacpp.modules.SlotSumReward` (its default sizes) on the group's keys."""
    n_agents, action_dim = group_shape(algorithm, group)
    own_features, slot_features = slots
    network = SlotSumReward(
        own_features, slot_features, action_dim, n_agents, use_next_obs=uses_next_observation,
        share_params=share_params,
    ).to(algorithm.device)  # fmt: skip
    in_keys = [(group, "observation"), (group, "action")]
    if uses_next_observation:
        in_keys.append(("next", group, "observation"))
    return TensorDictModule(network, in_keys=in_keys, out_keys=[(group, "predicted_reward")])


def world_model(algorithm: Algorithm, group: str, horizon: int, **sizes) -> TensorDictModule:
    """The axis-attention world model of the group's window, on the window contract of the losses (``sizes``: see
    :class:`~torchrl_shacpp.modules.AxisAttentionWorldModel`)."""
    observation_dim = algorithm.observation_spec[group, "observation"].shape[-1]
    _, action_dim = group_shape(algorithm, group)
    network = AxisAttentionWorldModel(observation_dim, action_dim, horizon, **sizes).to(algorithm.device)
    return window_world_model(network, observation_key=(group, "observation"), action_key=(group, "action"))


def transition_world_models(algorithm: Algorithm, group: str, **sizes) -> tuple[TensorDictModule, TensorDictModule]:
    """The group's one-step transition model (``sizes``: see :class:`~torchrl_shacpp.modules.AxisAttentionWorldModel`)
    as the module its loss trains (teacher forcing, writing ``(group, "predicted_observation")``) and as the window
    module the actor differentiates through (spliced along the real rollout); one set of parameters."""
    observation_dim = algorithm.observation_spec[group, "observation"].shape[-1]
    _, action_dim = group_shape(algorithm, group)
    periodic = PeriodicFeatures(algorithm.periodic_features)
    network = TransitionWorldModel(observation_dim, action_dim, periodic=periodic, **sizes).to(algorithm.device)
    keys = dict(observation_key=(group, "observation"), action_key=(group, "action"))
    return (
        transition_world_model(network, predicted_observation_key=(group, "predicted_observation"), **keys),
        spliced_world_model(
            network, max_gradient_growth=algorithm.world_gradient_growth,
            detached_features=algorithm.world_detached_features,
            trusted_error_ratio=algorithm.world_trusted_error_ratio, **keys,
        ),  # fmt: skip
    )
