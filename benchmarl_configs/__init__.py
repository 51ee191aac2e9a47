"""BenchMARL/hydra configs of torchrl_shacpp: ``algorithm/``, ``model/layers/``, ``experiment/``, ``task/vmas/`` and
``preset/`` (measured task configurations, ``+preset=<name>``).

Shipped inside the wheel as the package ``torchrl_shacpp.benchmarl_configs``; hydra finds them as
``pkg://torchrl_shacpp.benchmarl_configs`` (added by the ``hydra_plugins`` SearchPathPlugin, which also registers the
schemas and registry entries they refer to). The task presets are also the one source of the paper's task settings
for :func:`torchrl_shacpp.envs.make_vmas_env`.
"""
