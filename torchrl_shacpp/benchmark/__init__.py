"""The paper's comparison (Table 1, Fig. 1, Fig. 2) of SHAC, SHAC+ and SHAC++ against MAPPO, as a hydra app over
BenchMARL: ``python -m torchrl_shacpp.benchmark -m benchmark=cpu|paper``, on any hydra launcher, resumable.

Modules, one job each:

* :mod:`~torchrl_shacpp.benchmark.app`: the hydra app, one grid point per job (run, resume or skip);
* :mod:`~torchrl_shacpp.benchmark.grid`: which run a job is, the skip rules, the intervals each run aligns;
* :mod:`~torchrl_shacpp.benchmark.records`, :mod:`~torchrl_shacpp.benchmark.resume`: the state kept between
  invocations, and restoring an interrupted run;
* :mod:`~torchrl_shacpp.benchmark.callback`: the grid listed before the jobs, the results written after them;
* :mod:`~torchrl_shacpp.benchmark.runs`, :mod:`~torchrl_shacpp.benchmark.tables`,
  :mod:`~torchrl_shacpp.benchmark.figures`, :mod:`~torchrl_shacpp.benchmark.results`: the results, from any folder
  of BenchMARL runs (``python -m torchrl_shacpp.benchmark.results <folder>``).

The configs are ``comparison.yaml`` and ``benchmark/`` in ``torchrl_shacpp.benchmarl_configs``.
"""

from __future__ import annotations

from torchrl_shacpp.benchmark.runs import Curve, Run, load_run, load_runs

__all__ = ["Curve", "Run", "load_run", "load_runs"]
