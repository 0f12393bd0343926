"""The shared metric helpers: sample values as the Prometheus text format spells them."""

from __future__ import annotations

import pytest

from aeraki.metrics import prometheus_number


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3, "3"),
        (0.25, "0.25"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (float("nan"), "NaN"),
    ],
)
def test_values_use_the_formats_spelling(value: float, text: str) -> None:
    assert prometheus_number(value) == text
