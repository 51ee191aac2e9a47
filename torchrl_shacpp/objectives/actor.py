"""The SHAC window objective: a pathwise policy gradient through a differentiable window."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torch import nn
from torchrl.objectives import LossModule
from torchrl.objectives.value.functional import vec_generalized_advantage_estimate, vec_td1_return_estimate

from torchrl_shacpp.checks import check_fraction, check_non_negative
from torchrl_shacpp.modules.actor import clamped_normal_log_prob, sampling_distribution_params
from torchrl_shacpp.objectives.utils import check_window, expand_like, held_out, window_end_as_done


class SHACActorLoss(LossModule):
    r"""Short-horizon actor-critic (SHAC) actor loss over a graph-carrying window of ``h`` steps.

    The window is cut into episode *segments*: a segment starts at the window's first step or right after an
    episode ended, and ends at a termination, a time-limit truncation or the window's last step. For every
    environment, agent and segment :math:`[s, e]` the objective is the discounted segment return with a
    critic bootstrap,

    .. math::

        J_{s} = \sum_{t=s}^{e} \gamma^{t-s}\, \tilde r_t + \gamma^{e-s+1}\, (1 - d^{\text{term}}_e)\, V(\tilde o'_e),

    i.e. the discount restarts with each episode, a termination bootstraps 0, a truncation or the window end
    bootstraps the critic at the pre-reset next observation :math:`\tilde o'_e`. This is the TD(1) return
    :math:`G_s` at the segment's first step, computed with TorchRL's
    :func:`~torchrl.objectives.value.functional.vec_td1_return_estimate`. The loss is

    .. math::

        \mathcal{L}_\pi = -\frac{1}{B\,n\,h} \sum_{\text{env}} \sum_{\text{agent}} \sum_{\text{segments } s} J_s,

    plus the action-bound penalty :math:`c \cdot \operatorname{mean}\big(\operatorname{relu}(\mu - a_{\max})^2
    + \operatorname{relu}(a_{\min} - \mu)^2\big)` on the policy mean :math:`\mu` (the authors' SHAC++ term that
    keeps the clamped Gaussian's mean inside the action box), returned separately as ``loss_action_bound``, and the
    control cost :math:`c_\mu \cdot \operatorname{mean}(\mu^2)`, returned as ``loss_action_mean`` (0 by default).
    Where the return has no gradient with respect to an action, the cost alone moves the mean, back to 0: an agent
    that VMAS clamps at its arena's wall (dispersion's, whose corners an early policy runs into) gets a zero gradient
    from a simulator or a world model that follows it, and without the cost keeps pushing into the wall, its
    exploration noise centred on a mean that no longer moves it. With ``action_mean_relative`` the cost is
    :math:`c_\mu\, \bar g \cdot \operatorname{mean}(\mu^2)`, where :math:`\bar g` is a running mean over windows
    of :math:`\operatorname{mean}_i |g_i|`, :math:`g_i = M\, \partial \mathcal{L}_\pi / \partial \mu_i` the
    return's gradient w.r.t. each of the window's :math:`M` mean elements (not differentiated): the mean then settles
    where :math:`g_i + 2 c_\mu \bar g\, \mu_i = 0`, i.e. :math:`|\mu_i| = |g_i| / (2 c_\mu \bar g)`, whatever
    the task's reward scale (:math:`\bar g` reads 0.03-0.05 on navigation, 0.1 on dispersion's first windows and
    about 1 later). The running mean, not the window's own, because a window whose agents all sit in corners has
    :math:`g = 0`. Neither form suits a task whose agents need large means all the way (on navigation both stop
    them halfway to their goals: ``benchmarks/results/learning_vs_mappo/control_cost_scale/``). ``action_mean_gate``
    :math:`\tau > 0` keeps the relative cost to where the return has (almost) no gradient with respect to the action
    taken, :math:`h_i = M\, \partial \mathcal{L}_\pi / \partial a_i` (not :math:`g_i`, which is 0 wherever the
    clamp to the action box cut the sample off from the mean): only the elements with :math:`|h_i| < \tau \bar g`,
    among those the objective credits (with a world model that cannot see resets, the steps before the window's
    first episode end), are in the sum, :math:`c_\mu \bar g\, \frac{1}{M} \sum_i [|h_i| < \tau \bar g]\,
    \mu_i^2` (the mask is not differentiated); the share of elements it reaches is returned as
    ``action_mean_share``. On a dispersion policy whose agents sit in corners (SHAC++, 245k frames), 41% of the
    action elements at a wall and 9% of the others have :math:`|h| < 0.1\, \bar g` (``benchmarks/arena_walls.py
    --windows``).

    The gradient reaches the policy through :math:`\tilde r` and :math:`\tilde o'`, which must carry the autograd
    graph of the window (collect it with :class:`~torchrl_shacpp.collectors.WindowCollector`). Three gradient
    sources, chosen by the models given:

    * **SHAC** (no models): :math:`\tilde r` and :math:`\tilde o'` are the simulator's rewards and observations
      (``graph="simulator"``; the reward must be differentiable).
    * **SHAC+** (``reward_model``): :math:`\tilde r_t = R_\theta(o_t, a_t)` on the simulator's
      observations (``graph="simulator"``).
    * **SHAC++** (``world_model`` and ``reward_model``): :math:`\hat o_{0..h} = F_\theta(o_0, a_{0..h-1})` in one
      pass from the real first observation and the graph-carrying actions, then
      :math:`\tilde r_t = R_\theta(\hat o_t, a_t)` and :math:`V(\hat o_{t+1})` (``graph="policy"``:
      the simulator needs no gradient). The policy acted on the real observations. As the prediction cannot see a
      reset inside the window, only each environment's first segment counts (its later steps get no credit).
      A world model that follows the real rollout and says so with ``follows_resets = True``
      (:func:`~torchrl_shacpp.modules.spliced_world_model`) writes the real observations with its Jacobians; then
      every segment counts.

    The critic and the models are held out: they are evaluated with detached parameters (``value_params``, e.g.
    a target critic, for the critic), so gradients flow through their inputs only. ``value_gradient`` :math:`\alpha`
    scales the bootstrap's share of the gradient and leaves the objective's value unchanged: the bootstrap is
    :math:`\alpha V(\tilde o'_e) + (1 - \alpha) V(\operatorname{sg}(\tilde o'_e))`, so :math:`\nabla_\theta J_s =
    \sum_t \gamma^{t-s} \nabla_\theta \tilde r_t + \alpha \gamma^{e-s+1} \nabla_\theta V(\tilde o'_e)`. Where the
    reward is a potential-based shaping :math:`r_t = \Phi(o_{t+1}) - \Phi(o_t)` (navigation's goal distance), the
    critic learns :math:`V \approx -\Phi + c` and at :math:`\alpha = 1` the two gradients cancel to first order,
    leaving the critic's errors to steer the actor; :math:`\alpha = 0` is the rewards' gradient alone, blind to
    what lies beyond the window. :math:`\alpha > 1` amplifies the critic's part: where a learned reward is
    sparse, its gradient is steep at the rewarded states and noise elsewhere, and can drown a critic whose smooth
    gradient points the right way from afar. ``world_gradient`` :math:`\beta` does the same for SHAC++'s world model:
    it reads the actions as :math:`a + (\beta - 1)(a - \operatorname{sg}(a))`, the same values, so every path from
    the actions through the predicted observations (into the rewards and the bootstrap) carries :math:`\beta` times
    its gradient, :math:`\partial \hat o / \partial a \to \beta\, \partial \hat o / \partial a`, while the reward
    model's own action input keeps its; it sets the weight of the model's action Jacobian beside the reward model's
    direct term where the model's Jacobian is too small (a one-pass model early in its training).

    ``likelihood_ratio_weight`` :math:`\lambda_{LR} > 0` adds the likelihood-ratio (zeroth-order) estimate of the
    same gradient, from the window's real rewards and actions alone, as ``loss_likelihood_ratio``: PPO's clipped
    surrogate on one pass,

    .. math::

        \mathcal{L}_{LR} = -\frac{\lambda_{LR}}{B\,n\,h} \sum_{\text{env}, t, \text{agent}}
            \min\big(\rho_t A_t,\ \operatorname{clip}(\rho_t, 1 - \epsilon, 1 + \epsilon) A_t\big),
        \qquad \rho_t = \frac{\pi_\theta(a_t | o_t)}{\pi_{\text{old}}(a_t | o_t)},

    with :math:`A_t` the generalised advantage estimate (TorchRL's
    :func:`~torchrl.objectives.value.functional.vec_generalized_advantage_estimate`, :math:`\lambda` =
    ``advantage_lmbda``) of the real rewards under the ``reward`` key with the held-out critic, not normalised (so
    that :math:`\mathcal{L}_{LR}` and :math:`\mathcal{L}_\pi` estimate one gradient on one scale, up to the
    discount's weighting of the window's later steps), :math:`\pi` the clamped Gaussian
    (:func:`~torchrl_shacpp.modules.clamped_normal_log_prob` on the action box) and :math:`\pi_{\text{old}}` the
    policy that collected the window (``sample_log_prob``, written by
    :func:`~torchrl_shacpp.collectors.attach_policy_graph`; absent, the window is taken as on-policy,
    :math:`\rho = 1` with the gradient of :math:`\log \pi_\theta`). The pathwise gradient is exact for the
    samples drawn but blind to what a discontinuity between them does to the expected return (a contact that
    starts or stops, Suh et al. 2022's empirical bias), and a learned model's errors bias it further; the
    likelihood ratio needs neither the dynamics' Jacobian nor a model, at the price of its variance: MAPPO's
    gradient, mixed into SHAC's as the α-order estimators of Suh et al. mix them. PPO's own steps, several per
    collection on minibatches of its transitions, descend the same surrogate (unweighted) on
    :meth:`likelihood_ratio_items` with :meth:`minibatch_likelihood_ratio_loss`
    (:class:`~torchrl_shacpp.trainers.WindowUpdate`'s ``likelihood_ratio_steps``).

    Args:
        actor_network (TensorDictModule): the policy that produced the window; its parameters are this loss's
            parameters.
        value_network (TensorDictModule): the critic; reads observations, writes ``value``. Not a parameter of
            this loss.

    Keyword Args:
        gamma (float): discount. Defaults to 0.99.
        value_params (TensorDictBase, optional): parameters to evaluate the bootstrap critic with, e.g.
            :attr:`TDLambdaValueLoss.bootstrap_params` (the target critic). Defaults to the critic's current
            parameters, detached.
        action_low, action_high (Tensor or float, optional): the action box for the penalty, broadcastable to
            the action's trailing dimensions (e.g. ``[n_agents, action_dim]``; not the env batch shape).
        action_bound_coef (float): penalty coefficient :math:`c` (paper: 1.0). Defaults to 1.0; 0 disables it.
        action_mean_coef (float): the control cost's coefficient :math:`c_\mu` (the paper has none). Defaults to 0.
        action_mean_relative (bool): scale the control cost by the running mean :math:`\bar g` of the return's
            gradient w.r.t. the policy mean (one more backward pass to the mean per step). Defaults to ``False``.
        action_mean_momentum (float): the running mean's weight on its last value,
            :math:`\bar g \leftarrow m \bar g + (1 - m) \operatorname{mean}_i |g_i|` (the first window with a
            gradient sets it). Defaults to 0.9.
        action_mean_gate (float): :math:`\tau`: with ``action_mean_relative``, the cost reaches only the mean
            elements whose action's return gradient is below :math:`\tau \bar g`; it reads the reparameterised
            action under the ``action`` key, and refuses a window whose action is missing or carries no graph.
            Defaults to 0 (no gate: every element).
        reward_model (TensorDictModule, optional): reads a transition's observation / action / next-observation
            keys and writes ``predicted_reward`` (SHAC+, SHAC++).
        world_model (TensorDictModule, optional): reads the window's observations and actions and writes the
            predicted observations under the observation key and ``("next", observation)`` of the tensordict it
            is given (SHAC++, needs ``reward_model``), e.g. :func:`~torchrl_shacpp.modules.window_world_model`.
        value_gradient (float): :math:`\alpha \ge 0`, the weight of the bootstrap critic's gradient w.r.t.
            the window's last observations in the actor's gradient. Defaults to 1 (SHAC's, the paper's).
        world_gradient (float): :math:`\beta \ge 0`, the weight of the gradient through the world model's
            predicted observations to the actions. Defaults to 1 (the paper's); needs ``world_model`` otherwise.
        likelihood_ratio_weight (float): :math:`\lambda_{LR} \ge 0`, the likelihood-ratio term's weight beside the
            pathwise loss. Defaults to 0 (the paper's: none); needs the action box.
        likelihood_ratio_clip (float): PPO's :math:`\epsilon`. Defaults to 0.2.
        advantage_lmbda (float): the advantage's GAE :math:`\lambda`. Defaults to 0.95.

    Returns (forward):
        a TensorDict with ``loss_actor``, ``loss_action_bound``, ``loss_action_mean`` and ``loss_likelihood_ratio``
        (0 at ``likelihood_ratio_weight = 0``), and, not losses, the control
        cost's coefficient as applied, ``action_mean_weight``, and the share of mean elements it reaches,
        ``action_mean_share``.
    """

    @dataclass
    class _AcceptedKeys:
        """Configurable tensordict keys (set them with :meth:`set_keys`).

        Attributes:
            reward: reward key under ``"next"``. Defaults to ``"reward"``.
            value: the critic's output key. Defaults to ``"state_value"``.
            done: done key under ``"next"``. Defaults to ``"done"``.
            terminated: termination key under ``"next"``. Defaults to ``"terminated"``.
            loc: the policy mean written by the actor, for the action-bound penalty and the control cost. Defaults
                to ``"loc"``.
            action: the actions the window's rewards read, for the control cost's gate. Defaults to ``"action"``.
            predicted_reward: the reward model's output key. Defaults to ``"predicted_reward"``.
            scale: the policy's standard deviation, for the likelihood ratio. Defaults to ``"scale"``.
            sample_log_prob: the collected action's log-probability under the collecting policy, for the
                likelihood ratio's importance weight. Defaults to ``"sample_log_prob"``.
            advantage: where :meth:`likelihood_ratio_items` writes the advantage. Defaults to ``"advantage"``.
        """

        reward: NestedKey = "reward"
        value: NestedKey = "state_value"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"
        loc: NestedKey = "loc"
        action: NestedKey = "action"
        predicted_reward: NestedKey = "predicted_reward"
        scale: NestedKey = "scale"
        sample_log_prob: NestedKey = "sample_log_prob"
        advantage: NestedKey = "advantage"

    default_keys = _AcceptedKeys
    out_keys = [
        "loss_actor", "loss_action_bound", "loss_action_mean", "loss_likelihood_ratio", "action_mean_weight",
        "action_mean_share",
    ]

    def __init__(
        self,
        actor_network: TensorDictModule,
        value_network: TensorDictModule,
        *,
        gamma: float = 0.99,
        value_params: TensorDictBase | None = None,
        action_low: torch.Tensor | float | None = None,
        action_high: torch.Tensor | float | None = None,
        action_bound_coef: float = 1.0,
        action_mean_coef: float = 0.0,
        action_mean_relative: bool = False,
        action_mean_momentum: float = 0.9,
        action_mean_gate: float = 0.0,
        reward_model: TensorDictModule | None = None,
        world_model: TensorDictModule | None = None,
        value_gradient: float = 1.0,
        world_gradient: float = 1.0,
        likelihood_ratio_weight: float = 0.0,
        likelihood_ratio_clip: float = 0.2,
        advantage_lmbda: float = 0.95,
    ) -> None:
        super().__init__()
        check_fraction("gamma", gamma, "It discounts the window's rewards (paper: 0.99).")
        check_non_negative("action_bound_coef", action_bound_coef, "0 disables the action-bound penalty (paper: 1).")
        check_non_negative("action_mean_coef", action_mean_coef, "It weighs the control cost on the policy mean.")
        check_fraction("action_mean_momentum", action_mean_momentum, "The running mean's weight on its last value.")
        if action_mean_relative and not action_mean_coef:
            raise ValueError(
                "action_mean_relative=True scales the control cost, which action_mean_coef=0 turns off: set "
                "action_mean_coef > 0 (e.g. 1), or action_mean_relative=False."
            )
        check_non_negative("action_mean_gate", action_mean_gate, "It bounds |h| / ḡ where the control cost applies.")
        if action_mean_gate and not action_mean_relative:
            raise ValueError(
                "action_mean_gate compares the return's gradient with its running mean, which only "
                "action_mean_relative=True keeps: set action_mean_relative=True, or action_mean_gate=0."
            )
        check_non_negative("value_gradient", value_gradient, "The critic's weight in the actor's gradient (paper: 1).")
        check_non_negative("world_gradient", world_gradient, "The world model's weight in the actor's gradient (1).")
        if world_gradient != 1 and world_model is None:
            raise ValueError(
                f"world_gradient={world_gradient} weighs the gradient through a world model, and none is given: "
                "pass world_model (SHAC++), or world_gradient=1."
            )
        if world_model is not None and reward_model is None:
            raise ValueError(
                "A world model predicts observations only: SHAC++ also needs a reward_model to turn the predicted "
                "observations into rewards."
            )
        check_non_negative("likelihood_ratio_weight", likelihood_ratio_weight, "Its weight (0: none).")
        check_non_negative("likelihood_ratio_clip", likelihood_ratio_clip, "PPO's clip on the importance ratio.")
        check_fraction("advantage_lmbda", advantage_lmbda, "The advantage's GAE lambda.")
        if likelihood_ratio_weight and (action_low is None or action_high is None):
            raise ValueError(
                "The likelihood ratio reads the clamped policy's probability, which needs the action box: pass "
                "action_low and action_high, or likelihood_ratio_weight=0."
            )
        if action_bound_coef and (action_low is None or action_high is None):
            raise ValueError(
                "The action-bound penalty needs the action box: pass action_low and action_high "
                "(e.g. env.full_action_spec[...].space.low[0] for an env with one batch dimension), or "
                "action_bound_coef=0 to disable it."
            )
        self.actor_network = actor_network
        # Outside the module tree: the critic and the models are trained by their own losses, never by this one.
        self.__dict__["value_network"] = value_network
        self.__dict__["_value_params"] = value_params
        self.__dict__["reward_model"] = reward_model
        self.__dict__["world_model"] = world_model
        self.gamma = gamma
        self.value_gradient = value_gradient
        self.world_gradient = world_gradient
        self.action_bound_coef = action_bound_coef
        self.action_mean_coef = action_mean_coef
        self.action_mean_relative = action_mean_relative
        self.action_mean_momentum = action_mean_momentum
        self.action_mean_gate = action_mean_gate
        self.likelihood_ratio_weight = likelihood_ratio_weight
        self.likelihood_ratio_clip = likelihood_ratio_clip
        self.advantage_lmbda = advantage_lmbda
        # The running mean of |g| (0 until a window has a gradient): in the state only where it is used, so that a
        # checkpoint restores it and the checkpoints of losses without it (older ones too) still load.
        self.register_buffer("return_gradient_scale", torch.tensor(0.0), persistent=action_mean_relative)
        self.register_buffer("action_low", torch.as_tensor(action_low if action_low is not None else 0.0))
        self.register_buffer("action_high", torch.as_tensor(action_high if action_high is not None else 0.0))

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        # The window return is computed with the TD(1) functional directly; there is no estimator to update.
        pass

    @property
    def _first_segment_only(self) -> bool:
        return self.world_model is not None and not getattr(self.world_model, "follows_resets", False)

    def _imagined_window(self, tensordict: TensorDictBase) -> TensorDictBase:
        """A shallow copy of the window whose observations are the world model's predictions, with the window's
        actions; the world model reads them with ``world_gradient`` times their gradient."""
        window = tensordict.copy()
        action_key = self.tensor_keys.action
        beta = self.world_gradient
        action = None
        if beta != 1:
            if action_key not in self.world_model.in_keys:
                raise KeyError(
                    f"world_gradient={beta} scales the gradient through the world model's action input, but the "
                    f"world model reads {self.world_model.in_keys}, not the loss's action key {action_key!r}: set "
                    "it with set_keys(action=...)."
                )
            action = window.get(action_key)
            window.set(action_key, action + (beta - 1) * (action - action.detach()))
        with held_out(self.world_model):
            window = self.world_model(window)
        if action is not None:
            window.set(action_key, action)
        return window

    def _rewards(self, tensordict: TensorDictBase) -> torch.Tensor:
        if self.reward_model is None:
            return tensordict.get(("next", self.tensor_keys.reward))
        with held_out(self.reward_model):
            predicted = self.reward_model(tensordict.select(*self.reward_model.in_keys))
        return predicted.get(self.tensor_keys.predicted_reward)

    def _bootstrap_values(self, next_td: TensorDictBase) -> torch.Tensor:
        alpha = self.value_gradient
        gradient = nullcontext() if alpha else torch.no_grad()
        with held_out(self.value_network, self._value_params), gradient:
            value = self.value_network(next_td.select(*self.value_network.in_keys)).get(self.tensor_keys.value)
        return value if alpha in (0, 1) else alpha * value + (1 - alpha) * value.detach()

    def window_return(self, tensordict: TensorDictBase) -> torch.Tensor:
        r"""Sum of the segment objectives :math:`J_s`, shape ``[*B, *A, 1]`` (differentiable)."""
        time_dim = check_window(tensordict, type(self).__name__)
        keys = self.tensor_keys
        if self.world_model is not None:
            tensordict = self._imagined_window(tensordict)
        reward = self._rewards(tensordict)
        next_td = tensordict.get("next")
        next_value = self._bootstrap_values(next_td)
        episode_end = expand_like(next_td.get(keys.done), reward)
        terminated = expand_like(next_td.get(keys.terminated), reward)
        segment_end = window_end_as_done(episode_end, time_dim)
        returns = vec_td1_return_estimate(
            self.gamma,
            next_value,
            reward,
            done=segment_end,
            terminated=terminated,
            time_dim=time_dim,
        )
        # A segment starts at the window's first step and, unless a world model imagines the window from its
        # first observation only, after every episode end.
        segment_start = torch.zeros_like(episode_end) if self._first_segment_only else episode_end
        segment_start = torch.roll(segment_start, 1, dims=time_dim)
        segment_start.select(time_dim, 0).fill_(True)
        return (returns * segment_start).sum(time_dim)

    def action_bound_penalty(self, tensordict: TensorDictBase) -> torch.Tensor:
        """Coefficient × mean squared excess of the policy mean beyond the action box."""
        if not self.action_bound_coef:
            return torch.zeros((), device=self.action_low.device)
        loc = tensordict.get(self.tensor_keys.loc)
        excess = nn.functional.relu(loc - self.action_high) + nn.functional.relu(self.action_low - loc)
        return self.action_bound_coef * excess.pow(2).mean()

    def return_gradients(
        self, tensordict: TensorDictBase, loss_actor: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        r"""The return's gradients w.r.t. each of the window's :math:`M` policy-mean elements,
        :math:`g_i = M\, \partial \mathcal{L}_\pi / \partial \mu_i`, where the control cost reads them
        (``action_mean_relative``), and w.r.t. the actions, :math:`h_i = M\, \partial \mathcal{L}_\pi / \partial a_i`,
        where its gate does (``action_mean_gate``); not differentiated, ``None`` where unread or without a graph."""
        loc = tensordict.get(self.tensor_keys.loc)
        if not self.action_mean_relative or not loc.requires_grad:
            return None, None
        inputs = [loc]
        if self.action_mean_gate:
            action = tensordict.get(self.tensor_keys.action, None)
            if action is None or not action.requires_grad:
                # Without it the gate would pass every element: the ungated cost, silently.
                raise ValueError(
                    f"action_mean_gate={self.action_mean_gate} reads the return's gradient w.r.t. the action taken, "
                    f"but the window's {self.tensor_keys.action!r} is "
                    f"{'missing' if action is None else 'not differentiable'}: set_keys(action=...) to the "
                    "reparameterised action the rewards read, or action_mean_gate=0."
                )
            inputs.append(action)
        # An action the rewards and the bootstrap do not read (no contact on wheel) has a zero gradient, not none.
        gradients = torch.autograd.grad(loss_actor, inputs, retain_graph=True, materialize_grads=True)
        gradients = [gradient * loc.numel() for gradient in gradients]
        return gradients[0], gradients[1] if len(gradients) > 1 else None

    def action_mean_weight(self, gradient: torch.Tensor | None) -> torch.Tensor:
        r"""The control cost's coefficient: :math:`c_\mu`, times the running mean :math:`\bar g` of
        :math:`\operatorname{mean}_i |g_i|` with ``action_mean_relative``, updated here from ``gradient``
        (:meth:`return_gradients`' first) while training."""
        coef = torch.tensor(float(self.action_mean_coef), device=self.action_low.device)
        if not self.action_mean_relative:
            return coef
        if self.training and gradient is not None:
            scale = gradient.abs().mean()
            if torch.isfinite(scale):  # a non-finite window is the trainer's to skip, not the scale's to keep
                last = self.return_gradient_scale
                momentum = self.action_mean_momentum if last > 0 else 0.0
                self.return_gradient_scale.copy_(momentum * last + (1 - momentum) * scale)
        return coef * self.return_gradient_scale

    def action_mean_mask(self, tensordict: TensorDictBase, gradient: torch.Tensor | None) -> torch.Tensor | None:
        r"""With ``action_mean_gate`` :math:`\tau`, the mean elements the control cost reaches: those the objective
        credits whose action gradient (:meth:`return_gradients`' second) has :math:`|h_i| < \tau \bar g`; ``None``
        (every element) without a gate or a gradient."""
        if not self.action_mean_gate or gradient is None:
            return None
        mask = gradient.abs() < self.action_mean_gate * self.return_gradient_scale
        if self._first_segment_only:  # the steps after the window's first episode end get no gradient, not a small one
            time_dim = check_window(tensordict, type(self).__name__)
            ended = tensordict.get(("next", self.tensor_keys.done)).long()
            mask = mask & expand_like(ended.cumsum(time_dim) - ended == 0, gradient)
        return mask

    def action_mean_penalty(
        self, tensordict: TensorDictBase, weight: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Control cost: ``weight`` (:meth:`action_mean_weight`) × the mean over all the policy mean's elements of
        their squares, those outside ``mask`` (:meth:`action_mean_mask`) counted as 0."""
        if not self.action_mean_coef:
            return torch.zeros((), device=self.action_low.device)
        squares = tensordict.get(self.tensor_keys.loc).pow(2)
        return weight * (squares if mask is None else squares * mask).mean()

    def advantage(self, tensordict: TensorDictBase) -> torch.Tensor:
        """The GAE of the window's real rewards with the held-out critic, ``[*B, T, *A, 1]`` (no gradient)."""
        time_dim = check_window(tensordict, type(self).__name__)
        keys = self.tensor_keys
        next_td = tensordict.get("next")
        reward = next_td.get(keys.reward)
        with held_out(self.value_network, self._value_params), torch.no_grad():
            value = self.value_network(tensordict.select(*self.value_network.in_keys)).get(keys.value)
            next_value = self.value_network(next_td.select(*self.value_network.in_keys)).get(keys.value)
        advantage, _ = vec_generalized_advantage_estimate(
            self.gamma,
            self.advantage_lmbda,
            value,
            next_value,
            reward,
            done=window_end_as_done(expand_like(next_td.get(keys.done), reward), time_dim),
            terminated=expand_like(next_td.get(keys.terminated), reward),
            time_dim=time_dim,
        )
        return advantage

    def likelihood_ratio_loss(self, tensordict: TensorDictBase) -> torch.Tensor:
        r""":math:`\mathcal{L}_{LR}` (the class docstring): PPO's clipped surrogate of the window's real advantages."""
        keys = self.tensor_keys
        if not self.likelihood_ratio_weight:
            return torch.zeros((), device=self.action_low.device)
        log_prob = self._log_prob(tensordict.get(keys.action).detach(), tensordict)
        collected = tensordict.get(keys.sample_log_prob, None)
        collected = log_prob.detach() if collected is None else collected
        return self.likelihood_ratio_weight * self.clipped_surrogate(log_prob, collected, self.advantage(tensordict))

    def _log_prob(self, action: torch.Tensor, tensordict: TensorDictBase) -> torch.Tensor:
        """``action``'s log-probability under the clamped Gaussian of ``tensordict``'s ``loc`` and ``scale``,
        ``[..., 1]``."""
        keys = self.tensor_keys
        return clamped_normal_log_prob(
            action, tensordict.get(keys.loc), tensordict.get(keys.scale), self.action_low, self.action_high
        ).unsqueeze(-1)

    def clipped_surrogate(
        self, log_prob: torch.Tensor, collected_log_prob: torch.Tensor, advantage: torch.Tensor
    ) -> torch.Tensor:
        r"""PPO's clipped surrogate, as a loss: :math:`-\operatorname{mean} \min\big(\rho A,
        \operatorname{clip}(\rho, 1 - \epsilon, 1 + \epsilon) A\big)`, :math:`\rho = \exp(\log \pi -
        \log \pi_{\text{old}})`."""
        ratio = (log_prob - collected_log_prob).exp()
        clip = self.likelihood_ratio_clip
        return -torch.minimum(ratio * advantage, ratio.clamp(1 - clip, 1 + clip) * advantage).mean()

    def likelihood_ratio_items(self, tensordict: TensorDictBase) -> TensorDictBase:
        """A collected ``[*B, T]`` batch as the flat transitions of PPO's minibatch steps, without gradient: the
        actor's inputs, the actions, their log-probability under the collecting policy (the batch's ``loc`` and
        ``scale``) and their advantage (:meth:`advantage`, over the whole batch)."""
        keys = self.tensor_keys
        tensordict = tensordict.detach()
        items = tensordict.select(*self.actor_network.in_keys, keys.action)
        items.set(keys.sample_log_prob, self._log_prob(tensordict.get(keys.action), tensordict))
        items.set(keys.advantage, self.advantage(tensordict))
        return items.reshape(-1)

    def minibatch_likelihood_ratio_loss(self, items: TensorDictBase) -> torch.Tensor:
        """PPO's clipped surrogate (:meth:`clipped_surrogate`) on a minibatch of :meth:`likelihood_ratio_items`, the
        current policy's log-probability from the actor run again on the items' observations."""
        keys = self.tensor_keys
        log_prob = self._log_prob(items.get(keys.action), sampling_distribution_params(self.actor_network, items))
        return self.clipped_surrogate(log_prob, items.get(keys.sample_log_prob), items.get(keys.advantage))

    def _attached_to_policy(self, loss_actor: torch.Tensor, tensordict: TensorDictBase) -> torch.Tensor:
        """``loss_actor`` with a zero gradient to the policy, for a window whose rewards and bootstrap do not depend
        on its actions although the policy's output carries the graph: a window without contact on a task whose
        reward only contacts move (wheel), with ``value_gradient = 0``. Its exact gradient is zero; a window
        collected without a graph is refused."""
        loc = tensordict.get(self.tensor_keys.loc, None)
        if loc is None or not loc.requires_grad:
            raise RuntimeError(
                "The SHAC window carries no autograd graph: neither the rewards nor the bootstrap observations "
                "depend on the policy. Collect the window with WindowCollector(graph='simulator') on an env "
                "with differentiable dynamics (or graph='policy' with a world model)."
            )
        return loss_actor + 0.0 * loc.sum()

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        objective = self.window_return(tensordict)
        horizon = tensordict.shape[check_window(tensordict, type(self).__name__)]
        loss_actor = -objective.sum() / (objective.numel() * horizon)
        if not loss_actor.requires_grad:
            loss_actor = self._attached_to_policy(loss_actor, tensordict)
        mean_gradient, action_gradient = self.return_gradients(tensordict, loss_actor)
        weight = self.action_mean_weight(mean_gradient)
        mask = self.action_mean_mask(tensordict, action_gradient)
        share = torch.ones((), device=weight.device) if mask is None else mask.float().mean()
        return TensorDict(
            {
                "loss_actor": loss_actor,
                "loss_action_bound": self.action_bound_penalty(tensordict),
                "loss_action_mean": self.action_mean_penalty(tensordict, weight, mask),
                "loss_likelihood_ratio": self.likelihood_ratio_loss(tensordict),
                "action_mean_weight": weight,
                "action_mean_share": share,
            },
            batch_size=[],
        )
