"""cae.text's duration: one clock format for the Train page, the Experiments page and the CLI."""

import math

import pytest

from cae.text import fmt_seconds


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0:00"),
        (4.6, "0:05"),
        (65, "1:05"),
        (3599.4, "59:59"),
        (3600, "1:00:00"),
        (3723, "1:02:03"),
        (-3, "0:00"),  # an estimate below zero is none left
        (None, "–"),
        (math.inf, "–"),
        (math.nan, "–"),
    ],
)
def test_fmt_seconds_reads_as_a_clock(seconds, shown):
    assert fmt_seconds(seconds) == shown
