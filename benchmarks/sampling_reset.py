"""Reset time of VMAS sampling vs :class:`~torchrl_shacpp.envs.DifferentiableSampling` (same values, bit for bit).

Usage: ``python benchmarks/sampling_reset.py [--num-envs 32 512] [--repeats 3] [--threads 1]``. Prints a markdown
table: the median time of a full ``env.reset()`` and of one ``env.reset_at(0)``, and whether ``max_pdf`` is equal.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import vmas
from vmas.scenarios.sampling import Scenario as VmasSampling

from torchrl_shacpp.envs import DifferentiableSampling


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(scenario: type, num_envs: int, repeats: int) -> tuple[float, float, torch.Tensor]:
    env = vmas.make_env(scenario(), num_envs=num_envs, seed=0, n_agents=3)
    env.seed(1)  # both scenarios draw the same Gaussians from here on
    full = median_seconds(env.reset, repeats)
    max_pdf = env.scenario.max_pdf.clone()
    env.scenario.max_pdf = env.scenario.max_pdf.clone()  # VMAS's reset_at writes it in place

    def reset_one() -> None:
        env.reset_at(0)

    return full, median_seconds(reset_one, repeats), max_pdf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, nargs="+", default=[32, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| num_envs | VMAS reset() s | ours reset() s | speed-up | VMAS reset_at s | ours reset_at s | max_pdf equal |")
    print("|---|---|---|---|---|---|---|")
    for num_envs in args.num_envs:
        vmas_full, vmas_one, vmas_pdf = measure(VmasSampling, num_envs, args.repeats)
        ours_full, ours_one, ours_pdf = measure(DifferentiableSampling, num_envs, args.repeats)
        print(
            f"| {num_envs} | {vmas_full:.3f} | {ours_full:.3f} | {vmas_full / ours_full:.0f}× | {vmas_one:.4f} | "
            f"{ours_one:.4f} | {torch.equal(vmas_pdf, ours_pdf)} |"
        )


if __name__ == "__main__":
    main()
