"""Refactorings keep behaviour: twenty seeded windows of SHAC, SHAC+ and SHAC++ log the losses they logged before."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "golden"))

from window_losses import GOLDEN, all_window_losses  # noqa: E402


def test_twenty_windows_log_the_recorded_losses():
    recorded = json.loads(GOLDEN.read_text())
    fresh = all_window_losses()
    assert fresh.keys() == recorded.keys()
    for run, losses in recorded.items():
        assert fresh[run].keys() == losses.keys(), run
        for name, values in losses.items():
            assert fresh[run][name] == pytest.approx(values, rel=1e-4, abs=1e-6), f"{run}: {name}"
