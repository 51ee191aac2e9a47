"""The actor's gradient norm over a BenchMARL run, by quarter of its collections: does it grow, does it spike?

Reads each run folder's ``actor_grad_norm`` through :mod:`torchrl_shacpp.benchmark.runs` (the CSV logger's norm
before clipping, one value per collection: the mean over its actor steps and groups); per configuration
(``LABEL=GLOB``, one folder per seed, the seeds' collections pooled) and per quarter of the run, prints the median,
the 90th percentile, the maximum and the share of collections whose norm exceeds ``--spike``::

    python benchmarks/actor_gradient_norms.py "SHAC++ spliced=runs/shacpp_sampling_s*" "SHAC+=runs/shacp_sampling_s*"

The runs must have logged with ``experiment.loggers=[csv]``.
"""

from __future__ import annotations

import argparse
import glob
import statistics
from pathlib import Path

from torchrl_shacpp.benchmark.runs import load_runs

QUARTERS = 4


def gradient_norms(folder: Path) -> list[float]:
    """The actor's gradient norms of the one BenchMARL run under ``folder``, in collection order."""
    runs = load_runs(folder)
    if len(runs) != 1 or not runs[0].actor_grad_norm.values:
        raise SystemExit(f"{folder} must hold one SHAC-family BenchMARL run logged with experiment.loggers=[csv].")
    return list(runs[0].actor_grad_norm.values)


def quarter_row(norms: list[float], spike: float) -> str:
    ordered = sorted(norms)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    share = sum(norm > spike for norm in norms) / len(norms)
    return f"{statistics.median(norms):.2g} / {p90:.2g} / {ordered[-1]:.2g} / {share:.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="LABEL=GLOB")
    parser.add_argument("--spike", type=float, default=10.0, help="a norm above this counts as a spike")
    args = parser.parse_args()
    print(f"Per quarter of the run's collections: median / 90th percentile / max / share above {args.spike:g}\n")
    print("| configuration | runs | collections | " + " | ".join(f"quarter {q + 1}" for q in range(QUARTERS)) + " |")
    print("|---|---:|---:|" + "---|" * QUARTERS)
    for spec in args.runs:
        label, _, pattern = spec.rpartition("=")
        folders = sorted(Path(path) for path in glob.glob(pattern))
        if not folders:
            raise SystemExit(f"no run folder matches {pattern}")
        runs = [gradient_norms(folder) for folder in folders]
        quarters = [
            [norm for norms in runs for norm in norms[q * len(norms) // QUARTERS : (q + 1) * len(norms) // QUARTERS]]
            for q in range(QUARTERS)
        ]
        cells = " | ".join(quarter_row(norms, args.spike) for norms in quarters)
        print(f"| {label} | {len(runs)} | {sum(map(len, runs))} | {cells} |")


if __name__ == "__main__":
    main()
