"""BenchMARL/hydra configs of torchrl_shacpp: ``algorithm/``, ``model/layers/``, ``experiment/`` and ``task/vmas/``.

Hydra finds them as ``pkg://torchrl_shacpp.benchmarl_configs`` (added by the ``hydra_plugins`` SearchPathPlugin);
importing this package registers the schemas and registry entries they refer to.
"""

import torchrl_shacpp.benchmarl  # noqa: F401
