"""The actor's gradient norm over a BenchMARL run, by quarter of its actor steps: does it grow, does it spike?

Reads the CSV logger's ``train_<group>_actor_grad_norm`` (the norm before clipping, one value per actor step) of each
run folder; per configuration (``LABEL=GLOB``, one folder per seed, the seeds' steps pooled) and per quarter of the
run, prints the median, the 90th percentile, the maximum and the share of steps whose norm exceeds ``--spike``::

    python benchmarks/actor_gradient_norms.py "SHAC++ spliced=runs/shacpp_sampling_s*" "SHAC+=runs/shacp_sampling_s*"

The runs must have logged with ``experiment.loggers=[csv]``.
"""

from __future__ import annotations

import argparse
import csv
import glob
import statistics
from pathlib import Path

QUARTERS = 4


def gradient_norms(folder: Path, group: str) -> list[float]:
    """The actor's gradient norms of the one run under ``folder``, in step order."""
    files = sorted(folder.glob(f"**/scalars/train_{group}_actor_grad_norm.csv"))
    if len(files) != 1:
        raise SystemExit(f"{folder} holds {len(files)} CSV logs of the actor's gradient norm; name one run per folder.")
    with open(files[0]) as log:
        return [float(value) for _, value in sorted((int(step), value) for step, value in csv.reader(log))]


def quarter_row(norms: list[float], spike: float) -> str:
    ordered = sorted(norms)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    share = sum(norm > spike for norm in norms) / len(norms)
    return f"{statistics.median(norms):.2g} / {p90:.2g} / {ordered[-1]:.2g} / {share:.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="LABEL=GLOB")
    parser.add_argument("--group", default="agents", help="the BenchMARL group whose actor is read")
    parser.add_argument("--spike", type=float, default=10.0, help="a norm above this counts as a spike")
    args = parser.parse_args()
    print(f"Per quarter of the run's actor steps: median / 90th percentile / max / share above {args.spike:g}\n")
    print("| configuration | runs | steps | " + " | ".join(f"quarter {q + 1}" for q in range(QUARTERS)) + " |")
    print("|---|---:|---:|" + "---|" * QUARTERS)
    for spec in args.runs:
        label, _, pattern = spec.rpartition("=")
        folders = sorted(Path(path) for path in glob.glob(pattern))
        if not folders:
            raise SystemExit(f"no run folder matches {pattern}")
        runs = [gradient_norms(folder, args.group) for folder in folders]
        quarters = [
            [norm for norms in runs for norm in norms[q * len(norms) // QUARTERS : (q + 1) * len(norms) // QUARTERS]]
            for q in range(QUARTERS)
        ]
        cells = " | ".join(quarter_row(norms, args.spike) for norms in quarters)
        print(f"| {label} | {len(runs)} | {sum(map(len, runs))} | {cells} |")


if __name__ == "__main__":
    main()
