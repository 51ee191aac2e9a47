"""Argument checks shared by the TorchRL classes and the BenchMARL configs: one message per problem, naming the
argument (or config key), the bad value and what it should be."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any


def _message(name: str, value: Any, requirement: str, hint: str) -> str:
    return f"{name}={value!r} {requirement}." + (f" {hint}" if hint else "")


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_fraction(name: str, value: Any, hint: str = "") -> None:
    """``value`` is a real number in [0, 1] (a discount, a TD(λ) parameter, a Polyak weight)."""
    if not (_is_real(value) and 0 <= value <= 1):
        raise ValueError(_message(name, value, "must be a number in [0, 1]", hint))


def check_positive(name: str, value: Any, hint: str = "") -> None:
    """``value`` is a finite real number > 0 (a learning rate, a norm, a standard deviation)."""
    if not (_is_real(value) and value > 0):
        raise ValueError(_message(name, value, "must be a finite number > 0", hint))


def check_non_negative(name: str, value: Any, hint: str = "") -> None:
    """``value`` is a finite real number >= 0 (a penalty coefficient, an epsilon)."""
    if not (_is_real(value) and value >= 0):
        raise ValueError(_message(name, value, "must be a finite number >= 0", hint))


def check_count(name: str, value: Any, minimum: int = 1, hint: str = "") -> None:
    """``value`` is an integer >= ``minimum`` (a size, a number of steps, epochs, bins or layers)."""
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum):
        raise ValueError(_message(name, value, f"must be an integer >= {minimum}", hint))


def check_counts(name: str, values: Any, minimum: int = 1, hint: str = "") -> None:
    """``values`` is a sequence of integers >= ``minimum`` (a schedule of step counts), possibly empty."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(_message(name, values, "must be a list of integers", hint))
    for index, value in enumerate(values):
        check_count(f"{name}[{index}]", value, minimum, hint)


def check_divides(name: str, value: int, of_name: str, of_value: int, hint: str = "") -> None:
    """``value`` divides ``of_value`` (attention heads of a hidden size)."""
    if of_value % value:
        raise ValueError(_message(name, value, f"must divide {of_name}={of_value!r}", hint))


def check_choice(name: str, value: Any, choices: tuple[str, ...], hint: str = "") -> None:
    """``value`` is one of ``choices`` (a variant's name)."""
    if value not in choices:
        raise ValueError(_message(name, value, f"must be one of {', '.join(map(repr, choices))}", hint))
