"""SHAC, SHAC+ and SHAC++ as BenchMARL algorithms: thin glue around :class:`~torchrl_shacpp.trainers.WindowUpdate`."""

from torchrl_shacpp.benchmarl.algorithms.shac import Shac, ShacConfig
from torchrl_shacpp.benchmarl.algorithms.shacp import Shacp, ShacpConfig
from torchrl_shacpp.benchmarl.algorithms.shacpp import Shacpp, ShacppConfig

__all__ = ["Shac", "ShacConfig", "Shacp", "ShacpConfig", "Shacpp", "ShacppConfig"]
