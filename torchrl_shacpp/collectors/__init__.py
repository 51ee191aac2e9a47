"""Collectors of differentiable short-horizon windows."""

from torchrl_shacpp.collectors.window import WindowCollector

__all__ = ["WindowCollector"]
