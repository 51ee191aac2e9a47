"""An exact rank test for the few seeds a learning comparison has."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence


def mann_whitney_exact(sample: Sequence[float], baseline: Sequence[float]) -> tuple[float, float]:
    r"""Mann-Whitney's :math:`U` of ``sample`` against ``baseline`` and its exact two-sided p-value.

    :math:`U = \sum_{i,j} [x_i < y_j] + \tfrac12 [x_i = y_j]`: the pairs in which ``sample`` is the smaller (e.g.
    fewer frames to a target; ``math.inf`` for a run that never reached it). The p-value is the share of the
    :math:`\binom{n+m}{n}` ways to split the pooled values into groups of ``n`` and ``m`` whose :math:`U` is at least
    as far from :math:`nm/2` as the observed one: exact for the few seeds of a comparison, ties included, where the
    normal approximation is not.
    """
    if not sample or not baseline:
        raise ValueError(f"Both samples need a value, got {len(sample)} and {len(baseline)}.")
    if math.comb(len(sample) + len(baseline), len(sample)) > 200_000:
        raise ValueError(f"{len(sample)} + {len(baseline)} values are too many splits to enumerate exactly.")

    def u_statistic(x: Sequence[float], y: Sequence[float]) -> float:
        return sum((a < b) + 0.5 * (a == b) for a in x for b in y)

    observed = u_statistic(sample, baseline)
    centre = len(sample) * len(baseline) / 2
    pooled = [*sample, *baseline]
    extreme = total = 0
    for chosen in itertools.combinations(range(len(pooled)), len(sample)):
        rest = set(range(len(pooled))) - set(chosen)
        u = u_statistic([pooled[i] for i in chosen], [pooled[i] for i in rest])
        extreme += abs(u - centre) >= abs(observed - centre) - 1e-9
        total += 1
    return observed, extreme / total
