"""Collectors of differentiable short-horizon windows."""

from torchrl_shacpp.collectors.replay import attach_policy_graph
from torchrl_shacpp.collectors.window import WindowCollector

__all__ = ["WindowCollector", "attach_policy_graph"]
