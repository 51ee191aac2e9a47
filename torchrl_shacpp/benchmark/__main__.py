"""``python -m torchrl_shacpp.benchmark``: the paper's comparison as a hydra app (:mod:`~.app`)."""

from torchrl_shacpp.benchmark.app import main

main()
