"""Collectors of differentiable short-horizon windows, and the autograd graph of collected windows."""

from torchrl_shacpp.collectors.graph import WindowGraphCut, attach_policy_graph
from torchrl_shacpp.collectors.window import WindowCollector

__all__ = ["WindowCollector", "WindowGraphCut", "attach_policy_graph"]
