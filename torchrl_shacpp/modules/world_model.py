"""The SHAC++ world models and their adapters to the window contract of the losses: the paper's one-pass model
(every agent's observation sequence from the first observation and the actions) and a one-step transition model
spliced along the real rollout."""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils.checkpoint import checkpoint

from torchrl_shacpp.checks import check_count, check_counts, check_divides, check_fraction, check_positive
from torchrl_shacpp.modules.attention import AxisSelfAttention
from torchrl_shacpp.modules.transformer import EncoderLayer

#: SHAC++'s world-model variants: the paper's one-pass prediction from o_0 (:func:`window_world_model`), or a
#: transition model spliced along the real rollout (:func:`spliced_world_model`).
WORLD_ROLLOUTS = ("one_pass", "spliced")
#: ``detached_features``' automatic choice: the features whose values in the window are all integers.
INTEGER_FEATURES = "integer"


def check_detached_features(name: str, value: Sequence[int] | str | None) -> tuple[int, ...] | str | None:
    """Refuses a ``detached_features`` other than ``None``, ``"integer"`` or feature indices; returns the indices as
    a tuple (an empty list as ``None``)."""
    if value is None or value == INTEGER_FEATURES:
        return value
    check_counts(name, value, minimum=0, hint=f"Give observation feature indices, {INTEGER_FEATURES!r} or null.")
    return tuple(int(index) for index in value) or None


class AxisAttentionWorldModel(nn.Module):
    r"""Predicts :math:`\hat o_{0..h'}` for every agent in one pass from the real :math:`o_0` and actions
    :math:`a_{0..h'-1}`.

    Tokens live on a (step, agent) grid of :math:`(h'+1) \times n`:

    .. math::

        e_{0j} = W_o\, o_{0j} + b_o + p_0, \qquad e_{ij} = W_a\, a_{i-1,j} + b_a + p_i \quad (1 \le i \le h'),

    with a learned per-step embedding :math:`p_i` (``horizon + 1`` rows, shared by all agents, so the model is
    permutation-equivariant over agents). Then :math:`z = \operatorname{Drop}(\operatorname{LN}(e))`,
    ``num_layers`` post-norm :class:`EncoderLayer` s with :class:`AxisSelfAttention` (token :math:`(i, j)` sees
    every agent at step :math:`i` and agent :math:`j` at steps :math:`\le i`), and a linear head
    :math:`\hat o_{ij} = W_{\text{out}} z_{ij} + b_{\text{out}}`. Position 0 reconstructs :math:`o_0`; position
    :math:`i` predicts :math:`o_i`, which therefore depends on :math:`o_0` and on actions up to :math:`a_{i-1}` only.
    After two layers every agent's past reaches every agent (agent mixing at step :math:`t`, then the own-agent
    time axis), so :math:`\hat o_{ij}` is a function of all agents' :math:`o_0, a_{0..i-1}`.

    The attention never materialises the :math:`(h n)^2` score matrix unless ``dense_attention=True`` (the
    reference implementation of the same function, same parameters).

    With ``checkpoint_chunks = k >= 1``, training keeps only each layer's input: the backward pass recomputes a
    layer's activations, ``k`` slices of the batch at a time (the layers act on each window alone, so slicing is
    exact). The function and its gradients are unchanged; memory drops from about 3,300 float32 values per token
    (the post-norm layers' projections, norms and feed-forward activations) to about :math:`3 \cdot 64` plus one
    layer's activations for ``1/k`` of the batch, for one more forward pass of compute. The layer's parameters are
    captured when it runs, so the recomputation uses the same tensors even inside a ``to_module`` context (e.g. the
    detached parameters of a held-out model).

    Defaults are the paper's (App. B.3, Table 2): 3 layers, hidden 64, feed-forward 128, 1 head, dropout 0.

    Args:
        obs_dim: per-agent observation features.
        action_dim: per-agent action features.
        horizon: the longest action sequence :math:`h` (size of the per-step table); shorter ones are accepted.

    Keyword Args:
        hidden_size: token features. Defaults to 64.
        feedforward_size: feed-forward hidden features. Defaults to 128.
        num_layers: encoder layers. Defaults to 3.
        num_heads: attention heads (must divide ``hidden_size``). Defaults to 1.
        dropout: dropout probability. Defaults to 0.0.
        dense_attention: use the dense masked reference attention. Defaults to ``False``.
        checkpoint_chunks: recompute each layer in backward, in this many batch slices; 0 keeps every activation.
            Defaults to 0.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        horizon: int,
        *,
        hidden_size: int = 64,
        feedforward_size: int = 128,
        num_layers: int = 3,
        num_heads: int = 1,
        dropout: float = 0.0,
        dense_attention: bool = False,
        checkpoint_chunks: int = 0,
    ) -> None:
        super().__init__()
        sizes = dict(
            obs_dim=obs_dim, action_dim=action_dim, hidden_size=hidden_size, feedforward_size=feedforward_size,
            num_layers=num_layers, num_heads=num_heads,
        )  # fmt: skip
        for name, value in sizes.items():
            check_count(name, value)
        check_count("horizon", horizon, hint="It is the longest window of actions the model predicts (paper: 32).")
        check_divides(
            "num_heads", num_heads, "hidden_size", hidden_size, "Each head takes hidden_size / num_heads features."
        )
        check_fraction("dropout", dropout)
        check_count(
            "checkpoint_chunks", checkpoint_chunks, 0, "0 turns checkpointing off; k >= 1 recomputes the layers in k "
            "batch slices.",
        )  # fmt: skip
        self.horizon = horizon
        self.checkpoint_chunks = checkpoint_chunks
        self.obs_embed = nn.Linear(obs_dim, hidden_size)
        self.action_embed = nn.Linear(action_dim, hidden_size)
        self.step_embed = nn.Parameter(torch.randn(horizon + 1, hidden_size))
        self.norm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(
                AxisSelfAttention(hidden_size, num_heads, dropout, dense=dense_attention),
                hidden_size,
                feedforward_size,
                dropout,
            )
            for _ in range(num_layers)
        )
        self.head = nn.Linear(hidden_size, obs_dim)
        layer = self.layers[0]
        self._layer_tensor_names = [name for name, _ in (*layer.named_parameters(), *layer.named_buffers())]

    def forward(self, initial_obs: Tensor, actions: Tensor) -> Tensor:
        """Predict the observation sequence.

        Args:
            initial_obs: :math:`o_0`, ``[*batch, n_agents, obs_dim]``.
            actions: :math:`a_{0..h'-1}`, ``[*batch, h', n_agents, action_dim]`` with ``h' <= horizon``.

        Returns:
            :math:`\\hat o_{0..h'}`, ``[*batch, h' + 1, n_agents, obs_dim]``.
        """
        steps = actions.shape[-3]
        if initial_obs.shape[-2] == 0 or actions.shape[-2] == 0:
            raise ValueError(
                f"The world model got no agents: initial_obs {tuple(initial_obs.shape)} and actions "
                f"{tuple(actions.shape)} must be [*batch, n_agents, features] and [*batch, steps, n_agents, features] "
                "with n_agents >= 1."
            )
        if steps > self.horizon:
            raise ValueError(f"Got {steps} action steps but the world model was built for horizon {self.horizon}.")
        tokens = torch.cat([self.obs_embed(initial_obs).unsqueeze(-3), self.action_embed(actions)], dim=-3)
        z = self.dropout(self.norm(tokens + self.step_embed[: steps + 1, None]))
        for layer in self.layers:
            z = self._run_layer(layer, z)
        return self.head(z)

    def _run_layer(self, layer: nn.Module, z: Tensor) -> Tensor:
        if not (self.checkpoint_chunks and torch.is_grad_enabled()):
            return layer(z)
        # Captured now, by name: to_module sets plain attributes that named_parameters() does not list.
        tensors = {name: operator.attrgetter(name)(layer) for name in self._layer_tensor_names}
        windows = z.flatten(0, -4) if z.ndim > 3 else z.unsqueeze(0)
        slices = [
            checkpoint(functional_call, layer, tensors, (window_slice,), use_reentrant=False)
            for window_slice in windows.chunk(self.checkpoint_chunks)
        ]
        return torch.cat(slices).reshape(z.shape)


class _OnePassWindow(nn.Module):
    """``(observation [*B, T, n, o], action [*B, T, n, a]) -> (ô_{0..T-1}, ô_{1..T})``, reading ``o_0`` only."""

    def __init__(self, world_model: nn.Module) -> None:
        super().__init__()
        self.world_model = world_model

    def forward(self, observation: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        predicted = self.world_model(observation[..., 0, :, :], action)  # [*B, T + 1, n, o]
        return predicted[..., :-1, :, :], predicted[..., 1:, :, :]


def window_world_model(
    world_model: nn.Module,
    *,
    observation_key: NestedKey = ("agents", "observation"),
    action_key: NestedKey = ("agents", "action"),
) -> TensorDictModule:
    r"""Wraps a one-pass world model into the module that :class:`~torchrl_shacpp.objectives.SHACActorLoss` and
    :class:`~torchrl_shacpp.objectives.WorldModelLoss` expect.

    ``world_model`` maps the first observation :math:`o_0` (``[*B, n_agents, obs_dim]``) and an action sequence
    :math:`a_{0..T-1}` (``[*B, T, n_agents, action_dim]``) to :math:`\hat o_{0..T}` (``[*B, T + 1, n_agents,
    obs_dim]``), as :class:`~torchrl_shacpp.modules.AxisAttentionWorldModel` does. The returned module reads a
    ``[*B, T]`` window's observations (``[*B, T, n_agents, obs_dim]``, of which only the first step is used) and
    actions, and writes

    * :math:`\hat o_{0..T-1}` under ``observation_key`` and
    * :math:`\hat o_{1..T}` under ``("next", *observation_key)``,

    so that a window's ``(observation, next observation)`` pairs become predicted ones. The predictions never see
    a reset inside the window: the losses count each environment's first episode segment only.

    Args:
        world_model (nn.Module): ``(initial_obs, actions) -> predicted observations``, see above.

    Keyword Args:
        observation_key (NestedKey): the observation entry, read and written (also under ``"next"``). Defaults
            to ``("agents", "observation")``.
        action_key (NestedKey): the action entry. Defaults to ``("agents", "action")``.

    Examples:
        >>> world = window_world_model(AxisAttentionWorldModel(obs_dim, action_dim, horizon=32))
        >>> loss = WorldModelLoss(world)
        >>> loss.set_keys(observation=("agents", "observation"))
    """
    observation_key = (observation_key,) if isinstance(observation_key, str) else tuple(observation_key)
    return TensorDictModule(
        _OnePassWindow(world_model),
        in_keys=[observation_key, action_key],
        out_keys=[observation_key, ("next", *observation_key)],
    )


class PeriodicFeatures(nn.Module):
    r"""Observation features that are angles: feature :math:`k` observed modulo its period :math:`P_k` (VMAS's
    balance and wheel observe their line's rotation modulo :math:`\pi` in :math:`[0, \pi)`, so a level line sits
    on the cut and its feature jumps by :math:`\pi` whenever it tilts across level).

    * :meth:`encode` gives a model each such feature as :math:`(\cos\phi_k, \sin\phi_k)`,
      :math:`\phi_k = 2\pi o_k / P_k` (the cosine in the feature's place, the sines appended), so that one
      configuration is one input and a function of it is continuous across the cut;
    * :meth:`wrap` takes a difference of such features into :math:`[-P_k/2, P_k/2)`, the change that the jump
      hides: :math:`d - P_k \lfloor d / P_k + 1/2 \rfloor`.

    Args:
        features: ``[[index, period], ...]``: the feature's index in the per-agent observation and its period
            (> 0); an empty list for none.
    """

    def __init__(self, features: Sequence[Sequence[float]]) -> None:
        super().__init__()
        pairs = [tuple(pair) for pair in features]
        for pair in pairs:
            if len(pair) != 2:
                raise ValueError(f"periodic features are [index, period] pairs; got {list(pair)}.")
            check_count("a periodic feature's index", pair[0], minimum=0, hint="It indexes the observation.")
            check_positive("a periodic feature's period", pair[1], "e.g. 3.141592653589793 for VMAS's rot % pi.")
        if len({index for index, _ in pairs}) != len(pairs):
            raise ValueError(f"periodic features name a feature twice: {[list(pair) for pair in pairs]}.")
        # Not in a state dict: they are the configuration, and checkpoints from before them still load.
        index = torch.tensor([int(index) for index, _ in pairs], dtype=torch.long)
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("period", torch.tensor([float(period) for _, period in pairs]), persistent=False)

    def __len__(self) -> int:
        return len(self.index)

    def check_observation(self, features: int) -> None:
        """Refuses an index beyond ``features``, the observation's size."""
        if len(self) and int(self.index.max()) >= features:
            raise ValueError(
                f"periodic features {self.index.tolist()} name a feature beyond the observation's {features}: give "
                f"indices below {features}."
            )

    def encode(self, observation: Tensor) -> Tensor:
        """``[..., features]`` -> ``[..., features + len(self)]``: each periodic feature as its phase's cosine, in its
        place, and sine, appended."""
        if not len(self):
            return observation
        phase = observation[..., self.index] * (2 * torch.pi / self.period)
        return torch.cat([observation.index_copy(-1, self.index, phase.cos()), phase.sin()], -1)

    def wrap(self, difference: Tensor) -> Tensor:
        """A difference of observations with each periodic feature's part taken into ``[-P/2, P/2)``."""
        if not len(self):
            return difference
        part = difference[..., self.index]
        part = part - self.period * torch.floor(part / self.period + 0.5)
        return difference.index_copy(-1, self.index, part)


class TransitionWorldModel(nn.Module):
    r"""One step of every agent's dynamics, as a change of the observation:

    .. math::

        \hat o_{t+1} = o_t + \Delta_\theta(o_t, a_t),

    with :math:`\Delta_\theta` an :class:`AxisAttentionWorldModel` on a one-step window (its token of agent
    :math:`j` at step 1 reads every agent's action and, through the time axis, its own observation, which after the
    first layer holds every agent's). Predicting the change is what the physics suggests: positions integrate
    velocities, velocities integrate forces, so :math:`\partial o_{t+1}/\partial o_t` is close to the identity and
    the model has to learn only the small remainder, and :math:`\partial o_{t+1}/\partial a_t` is the action's
    own effect over one step, which the data's action noise identifies directly.

    With ``periodic`` features (angles observed modulo a period) :math:`\Delta_\theta` reads each as its phase's
    cosine and sine (:meth:`PeriodicFeatures.encode`) and predicts its change across the cut, not the jump
    (:class:`~torchrl_shacpp.objectives.TransitionModelLoss` wraps the residual the same way): the prediction
    :math:`o_t + \Delta_\theta` may leave the period's interval, as its value is never used, only its Jacobians.

    Args:
        obs_dim: per-agent observation features.
        action_dim: per-agent action features.

    Keyword Args:
        periodic (PeriodicFeatures, optional): the observation's angle features. Defaults to none.
        **options: :class:`AxisAttentionWorldModel`'s sizes (paper: 3 layers, hidden 64, feed-forward 128, 1 head) and
            options. Its attention is the dense masked one by default: over the window's :math:`2n` tokens that is
            the cheaper arithmetic (:class:`~torchrl_shacpp.modules.AxisSelfAttention`), the same function.
    """

    def __init__(self, obs_dim: int, action_dim: int, *, periodic: PeriodicFeatures | None = None, **options) -> None:
        super().__init__()
        self.periodic = periodic if periodic is not None else PeriodicFeatures([])
        self.periodic.check_observation(obs_dim)
        options = {"dense_attention": True, **options}
        self.network = AxisAttentionWorldModel(obs_dim + len(self.periodic), action_dim, 1, **options)
        if len(self.periodic):  # the input has the sines besides; the change is the observation's
            self.network.head = nn.Linear(self.network.head.in_features, obs_dim)
        # Start from "nothing changes": J_o = I and J_a = 0, so that an untrained model's Jacobians, chained over a
        # window, neither explode nor point anywhere.
        nn.init.zeros_(self.network.head.weight)
        nn.init.zeros_(self.network.head.bias)

    def forward(self, observation: Tensor, action: Tensor) -> Tensor:
        r"""``[*batch, n_agents, obs_dim]``, ``[*batch, n_agents, action_dim]`` -> :math:`\hat o_{t+1}`, shaped as
        ``observation``."""
        return observation + self.network(self.periodic.encode(observation), action.unsqueeze(-3))[..., 1, :, :]


class _SplicedWindow(nn.Module):
    """``(o, a, o', done)`` of a ``[*B, T]`` window ``-> (õ_{0..T-1}, õ'_{0..T-1})``: the real values, the transition
    model's chained Jacobians (see :func:`spliced_world_model`)."""

    def __init__(
        self,
        transition: nn.Module,
        max_gradient_growth: float | None = None,
        detached_features: Sequence[int] | str | None = None,
        trusted_error_ratio: float | None = None,
    ) -> None:
        super().__init__()
        if max_gradient_growth is not None:
            check_positive("max_gradient_growth", max_gradient_growth)
        if trusted_error_ratio is not None:
            check_positive("trusted_error_ratio", trusted_error_ratio, "It is a multiple of the window's median error.")
        self.transition = transition
        self.max_gradient_growth = max_gradient_growth
        self.detached_features = check_detached_features("detached_features", detached_features)
        self.trusted_error_ratio = trusted_error_ratio

    def _detached_mask(self, observation: Tensor, next_observation: Tensor) -> Tensor | None:
        """``[features]``: True for the features whose prediction carries no gradient, or ``None``."""
        if self.detached_features is None:
            return None
        features = observation.shape[-1]
        if self.detached_features == INTEGER_FEATURES:
            values = torch.cat([observation, next_observation], -3).flatten(0, -2)
            return (values == values.round()).all(0)
        if max(self.detached_features) >= features:
            raise ValueError(
                f"detached_features={list(self.detached_features)} names a feature beyond the observation's "
                f"{features}: give indices below {features}."
            )
        mask = torch.zeros(features, dtype=torch.bool, device=observation.device)
        mask[list(self.detached_features)] = True
        return mask

    def trusted_steps(self, observation: Tensor, action: Tensor, next_observation: Tensor) -> Tensor | None:
        r"""``[*B, T, n_agents, 1]``: True at the agent-steps whose one-step prediction error
        :math:`e_{t,i} = \lVert T_\theta(o_t, a_t)_i - o'_{t,i}\rVert^2` (each periodic feature's residual wrapped)
        is at most ``trusted_error_ratio`` times the window's median; ``None`` without the ratio."""
        if self.trusted_error_ratio is None:
            return None
        with torch.no_grad():
            residual = self.transition(observation, action) - next_observation
            periodic = getattr(self.transition, "periodic", None)
            if periodic is not None:
                residual = periodic.wrap(residual)
            error = residual.pow(2).sum(-1, keepdim=True)
            return error <= self.trusted_error_ratio * error.median()

    def _step(self, current: Tensor, action: Tensor) -> Tensor:
        r""":math:`T_\theta(\tilde o_t, a_t)`; with ``max_gradient_growth`` the gradient it passes back to
        :math:`\tilde o_t`, :math:`J_o^\top g`, is scaled per environment to a norm of at most ``max_gradient_growth``
        times that of :math:`g`, the gradient arriving at its output."""
        if self.max_gradient_growth is None or not current.requires_grad:
            return self.transition(current, action)
        state = current.view_as(current)  # its gradient is J_o^T g alone
        predicted = self.transition(state, action)
        arriving = {}

        def measure(gradient: Tensor) -> None:
            arriving["norm"] = gradient.flatten(-2).norm(dim=-1)[..., None, None]

        def bound(gradient: Tensor) -> Tensor:
            norm = gradient.flatten(-2).norm(dim=-1)[..., None, None]
            limit = self.max_gradient_growth * arriving["norm"]
            return torch.where(norm > limit, gradient * limit / norm, gradient)

        predicted.register_hook(measure)  # runs before the gradient goes on through the model to ``state``
        state.register_hook(bound)
        return predicted

    def forward(self, observation: Tensor, action: Tensor, next_observation: Tensor, done: Tensor) -> tuple[Tensor, Tensor]:
        observation, next_observation = observation.detach(), next_observation.detach()
        steps = observation.shape[-3]
        episode_end = done.unsqueeze(-1)  # [*B, T, 1, 1]: broadcasts over agents and features
        current = observation[..., 0, :, :]
        detached = self._detached_mask(observation, next_observation)
        trusted = self.trusted_steps(observation, action, next_observation)
        observed, spliced_next = [], []
        for t in range(steps):
            observed.append(current)
            predicted = self._step(current, action[..., t, :, :])
            if detached is not None:
                predicted = torch.where(detached, predicted.detach(), predicted)
            if trusted is not None:
                predicted = torch.where(trusted[..., t, :, :], predicted, predicted.detach())
            spliced = next_observation[..., t, :, :] + (predicted - predicted.detach())
            spliced_next.append(spliced)
            if t + 1 < steps:  # a reset starts from the real observation, which no earlier action reaches
                current = torch.where(episode_end[..., t, :, :], observation[..., t + 1, :, :], spliced)
        return torch.stack(observed, -3), torch.stack(spliced_next, -3)


def transition_world_model(
    transition: nn.Module,
    *,
    observation_key: NestedKey = ("agents", "observation"),
    action_key: NestedKey = ("agents", "action"),
    predicted_observation_key: NestedKey = ("agents", "predicted_observation"),
) -> TensorDictModule:
    r"""Wraps a transition model :math:`(o_t, a_t) \mapsto \hat o_{t+1}` (e.g. :class:`TransitionWorldModel`) to read
    transitions of any batch shape and write its prediction under ``predicted_observation_key``, which
    :class:`~torchrl_shacpp.objectives.TransitionModelLoss` regresses onto ``("next", observation)`` (teacher
    forcing: every step is predicted from the real observation)."""
    return TensorDictModule(transition, in_keys=[observation_key, action_key], out_keys=[predicted_observation_key])


def spliced_world_model(
    transition: nn.Module,
    *,
    observation_key: NestedKey = ("agents", "observation"),
    action_key: NestedKey = ("agents", "action"),
    done_key: NestedKey = "done",
    max_gradient_growth: float | None = None,
    detached_features: Sequence[int] | str | None = None,
    trusted_error_ratio: float | None = None,
) -> TensorDictModule:
    r"""The window module of SHAC++'s spliced variant: a transition model's Jacobians along the *real* rollout.

    For a ``[*B, T]`` window of real observations :math:`o_t`, next observations :math:`o'_t` and graph-carrying
    actions :math:`a_t`, it writes

    .. math::

        \tilde o_0 = o_0, \qquad
        \tilde o'_t = o'_t + T_\theta(\tilde o_t, a_t) - \operatorname{sg}\big(T_\theta(\tilde o_t, a_t)\big),
        \qquad \tilde o_{t+1} = \tilde o'_t \text{ (or } o_{t+1} \text{ after an episode end)},

    under the observation key and ``("next", observation)``. In value :math:`\tilde o = o`: the reward model and
    the critic score the real observations, where they were trained. In gradient,
    :math:`\partial \tilde o'_t / \partial a_k = \prod J_o \cdot J_a` is the product of the model's local
    Jacobians :math:`J_o = \partial T_\theta/\partial o`, :math:`J_a = \partial T_\theta/\partial a`, each taken
    at a real transition, i.e. on the model's training data (the stochastic value gradient's splice; the paper's
    one-pass model instead differentiates its own open-loop prediction). An episode end cuts the chain, so every
    episode segment of the window gets its credit, not the first one only
    (:attr:`~torchrl_shacpp.objectives.SHACActorLoss` reads ``follows_resets``).

    ``done_key`` (under ``"next"``) is ``[*B, T, 1]``, once per environment.

    With ``max_gradient_growth`` :math:`\rho`, each step back along the chain may grow the state's gradient by at most
    :math:`\rho` per environment: :math:`J_o^\top g` is scaled to a norm of at most :math:`\rho\lVert g\rVert`, with
    :math:`g` the gradient arriving at :math:`\tilde o'_t` (from the reward model, the critic and the later steps).
    A product of learned Jacobians of norm above 1 otherwise explodes over a window (SHAC++ on dispersion with 3
    agents: the first steps' action gradients 10-1,700 times the last ones' in the windows where its return
    collapsed); the gradients each step gets directly from the reward model and the critic are not touched.

    With ``detached_features`` (observation feature indices, or ``"integer"``: the features whose values in the
    window, :math:`o` and :math:`o'`, are all integers, such as flags and counts) the model's prediction of those
    features carries no gradient: :math:`\partial\tilde o'_{t,i}/\partial(\tilde o_t, a_t) = 0`, as the simulator's
    own Jacobian of a step function is almost everywhere. A model can only learn such a feature (dispersion's eaten
    flags) as a steep slope, whose Jacobian, chained, made SHAC++'s exploded agent-steps on dispersion with 3 agents
    (``benchmarks/results/learning_vs_mappo/dispersion_n3_flags/``). A continuous feature held at an integer over
    the whole window is cut too (transport's package velocity while nobody pushes it, a lidar ray that sees nothing,
    VMAS's ``max_range - distance`` = 0): there the simulator's own Jacobian is zero as well, unless a contact is
    about to begin.

    With ``trusted_error_ratio`` :math:`k`, an agent-step whose one-step prediction misses the real next observation
    by more than :math:`k` times the window's median agent-step error, :math:`e_{t,i} > k \operatorname{median}(e)`
    with :math:`e_{t,i} = \lVert T_\theta(o_t, a_t)_i - o'_{t,i}\rVert^2`, passes no gradient:
    :math:`\partial\tilde o'_{t,i}/\partial(\tilde o_t, a_t) = 0`. Where the model has not learned what happened
    (navigation's lidar seeing another agent, a contact), its Jacobian says nothing of it and the pathwise gradient
    through that step is blind; the cut leaves such agent-steps to the other terms of the actor's loss (the reward
    model's direct term, the likelihood ratio).
    """
    observation_key = (observation_key,) if isinstance(observation_key, str) else tuple(observation_key)
    done_key = (done_key,) if isinstance(done_key, str) else tuple(done_key)
    module = TensorDictModule(
        _SplicedWindow(transition, max_gradient_growth, detached_features, trusted_error_ratio),
        in_keys=[observation_key, action_key, ("next", *observation_key), ("next", *done_key)],
        out_keys=[observation_key, ("next", *observation_key)],
    )
    module.follows_resets = True
    return module
