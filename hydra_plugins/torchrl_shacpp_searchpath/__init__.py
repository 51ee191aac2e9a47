"""Puts torchrl_shacpp's BenchMARL configs on hydra's search path, so that ``algorithm=shacpp`` resolves after
``pip install``. Hydra imports this module for every hydra app in the environment: it stays import-light, acts only
for BenchMARL's app, and never breaks another app."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class TorchRLShacppSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if not any("benchmarl" in element.path for element in search_path.get_path()):
            return
        try:
            import torchrl_shacpp.benchmarl  # noqa: F401  (registers the algorithms, models and tasks the yaml names)
        except ImportError as error:  # a broken install must not take BenchMARL down with it
            import warnings

            warnings.warn(f"torchrl_shacpp's BenchMARL configs are unavailable: {error}", stacklevel=1)
            return
        search_path.append(provider="torchrl_shacpp", path="pkg://torchrl_shacpp.benchmarl_configs")
