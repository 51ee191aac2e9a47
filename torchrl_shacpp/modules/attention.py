"""Multi-head self-attention over the agent axis and over the (time, agent) grid of the world model."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class _SelfAttention(nn.Module):
    r"""Multi-head self-attention with a pluggable attention pattern.

    For tokens :math:`x` with ``token_dims`` token axes in front of the feature axis,

    .. math::

        q, k, v = x W_{qkv} + b_{qkv}, \qquad
        \operatorname{out} = \big[\operatorname{attend}(q^{(1)}, k^{(1)}, v^{(1)}), \dots,
        \operatorname{attend}(q^{(H)}, k^{(H)}, v^{(H)})\big] W_o + b_o,

    where each head has ``embed_dim // num_heads`` features. Subclasses define ``attend`` (which keys a query
    may see) on tensors shaped ``[*batch, num_heads, *tokens, head_dim]``.
    """

    token_dims: int

    def __init__(self, embed_dim: int, num_heads: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}.")
        self.num_heads = num_heads
        self.dropout = dropout
        self.in_proj = nn.Linear(embed_dim, 3 * embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        """``[*batch, *tokens, embed_dim] -> [*batch, *tokens, embed_dim]``."""
        head_axis = -2 - self.token_dims
        q, k, v = (
            t.unflatten(-1, (self.num_heads, -1)).movedim(-2, head_axis) for t in self.in_proj(x).chunk(3, dim=-1)
        )
        out = self.attend(q * q.shape[-1] ** -0.5, k, v)
        return self.out_proj(out.movedim(head_axis, -2).flatten(-2))

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Attention of pre-scaled queries ``q`` on keys ``k`` and values ``v``, per head."""
        raise NotImplementedError


class AgentSelfAttention(_SelfAttention):
    r"""Unmasked multi-head self-attention over the agent axis of ``[*batch, n_agents, embed_dim]`` tokens.

    :math:`\operatorname{attend}(q, k, v)_j = \sum_k \operatorname{softmax}_k(q_j \cdot k_k)\, v_k` (queries are
    pre-scaled by :math:`d_{\text{head}}^{-1/2}`). No positional information: permuting the agents permutes the
    output.
    """

    token_dims = 1

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        # q is already scaled, so SDPA's own scale must be 1.
        return F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, scale=1.0)


def axis_attention_mask(steps: int, n_agents: int, device: torch.device | None = None) -> Tensor:
    r"""The dense "axis" mask over ``steps * n_agents`` tokens flattened step-major (token ``i * n + j``).

    ``mask[(i, j), (t, k)]`` is ``True`` (may attend) iff :math:`t = i` (any agent at the same step) or
    :math:`k = j \wedge t \le i` (the query's own agent at the same or an earlier step).
    """
    step = torch.arange(steps, device=device).repeat_interleave(n_agents)
    agent = torch.arange(n_agents, device=device).repeat(steps)
    same_step = step[:, None] == step[None, :]
    own_past = (agent[:, None] == agent[None, :]) & (step[None, :] <= step[:, None])
    return same_step | own_past


class AxisSelfAttention(_SelfAttention):
    r"""Multi-head self-attention under the world model's "axis" mask, on ``[*batch, T, n, embed_dim]`` tokens.

    Token :math:`(i, j)` (step :math:`i`, agent :math:`j`) may attend to the set
    :math:`\mathcal{A}_{ij} = \{(i, k)\}_{k=1}^{n} \cup \{(t, j)\}_{t < i}`: every agent at its own step, and its
    own agent at earlier steps (its own token belongs to the first set only, so it is counted once). With
    pre-scaled queries,

    .. math::

        \operatorname{attend}(q, k, v)_{ij}
        = \frac{\sum_{k} e^{q_{ij} \cdot k_{ik}}\, v_{ik} + \sum_{t<i} e^{q_{ij} \cdot k_{tj}}\, v_{tj}}
               {\sum_{k} e^{q_{ij} \cdot k_{ik}} + \sum_{t<i} e^{q_{ij} \cdot k_{tj}}}.

    The fast path (default) computes the agent-axis logits ``[*, T, n, n]`` and the time-axis logits
    ``[*, T, n, T]``, concatenates them under ONE softmax and mixes the matching values: memory
    :math:`O(B\,H\,T\,n\,(n + T))` instead of the dense :math:`O(B\,H\,(T n)^2)`. With ``dense=True`` the same
    function is computed the standard way, as masked attention over all :math:`T n` tokens with
    :func:`axis_attention_mask`, by PyTorch's fused :func:`~torch.nn.functional.scaled_dot_product_attention`: its
    :math:`(T n)^2` arithmetic is the cheaper one for short windows of few agents (the one-step window of
    :class:`~torchrl_shacpp.modules.TransitionWorldModel`, whose training step it makes 1.75x faster on a CPU,
    ``benchmarks/results/model_step_cost.md``), the axis path for long windows of many agents. The flag changes no
    parameter, so state dicts are interchangeable between the two.
    """

    token_dims = 2

    def __init__(self, embed_dim: int, num_heads: int = 1, dropout: float = 0.0, dense: bool = False) -> None:
        super().__init__(embed_dim, num_heads, dropout)
        self.dense = dense

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return self._attend_dense(q, k, v) if self.dense else self._attend_axis(q, k, v)

    def _dropout(self, probs: Tensor) -> Tensor:
        return F.dropout(probs, self.dropout, self.training)

    def _attend_axis(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        steps, n_agents = q.shape[-3], q.shape[-2]
        agent_logits = q @ k.transpose(-1, -2)  # [*, T, n, n]: (i, j) . (i, k)
        time_logits = torch.einsum("...ijd,...tjd->...ijt", q, k)  # [*, T, n, T]: (i, j) . (t, j)
        not_earlier = torch.ones(steps, steps, dtype=torch.bool, device=q.device).triu()  # [i, t]: t >= i
        time_logits = time_logits.masked_fill(not_earlier[:, None, :], float("-inf"))
        # Step 0 has no earlier step: its time logits are all -inf, which is fine because the agent set is never
        # empty (it holds the query's own token).
        probs = self._dropout(torch.softmax(torch.cat([agent_logits, time_logits], dim=-1), dim=-1))
        agent_probs, time_probs = probs.split([n_agents, steps], dim=-1)
        return agent_probs @ v + torch.einsum("...ijt,...tjd->...ijd", time_probs, v)

    def _attend_dense(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        steps, n_agents = q.shape[-3], q.shape[-2]
        q, k, v = (t.flatten(-3, -2) for t in (q, k, v))  # [*, T*n, d], step-major
        mask = axis_attention_mask(steps, n_agents, q.device)
        # q is already scaled, so SDPA's own scale must be 1.
        dropout = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=1.0).unflatten(
            -2, (steps, n_agents)
        )
