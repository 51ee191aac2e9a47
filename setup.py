"""The packages: ``torchrl_shacpp``, the hydra plugin, and the top-level ``benchmarl_configs/`` shipped inside the
package as ``torchrl_shacpp.benchmarl_configs`` (everything else is in setup.cfg)."""

from setuptools import find_namespace_packages, setup

CONFIGS = "torchrl_shacpp.benchmarl_configs"

setup(
    packages=[
        *find_namespace_packages(include=["torchrl_shacpp*", "hydra_plugins*"]),
        CONFIGS,
        *(f"{CONFIGS}.{name}" for name in find_namespace_packages("benchmarl_configs")),
    ],
    package_dir={CONFIGS: "benchmarl_configs"},
)
