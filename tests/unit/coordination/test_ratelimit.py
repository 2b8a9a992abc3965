"""Rate strings."""

from __future__ import annotations

import pytest

from celery_kit.coordination.ratelimit import Rate, RateLimiter


@pytest.mark.parametrize(
    ("text", "per_s"),
    [
        ("100/m", 100 / 60),
        ("5/s", 5.0),
        ("10/30s", 10 / 30),
        ("1000/h", 1000 / 3600),
        ("2/d", 2 / 86400),
        (" 1.5 / s ", 1.5),
    ],
)
def test_parse(text: str, per_s: float) -> None:
    assert Rate.parse(text).per_s == pytest.approx(per_s)


@pytest.mark.parametrize("text", ["", "100", "0/s", "10/w", "-1/s", "x/s", "10/0s"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        Rate.parse(text)


def test_burst_defaults_to_the_count_and_must_hold_a_token() -> None:
    assert RateLimiter("a", "100/m", client=object()).burst == 100  # type: ignore[arg-type]
    assert RateLimiter("a", "1/h", client=object()).burst == 1  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="burst"):
        RateLimiter("a", "10/s", burst=0.5, client=object())  # type: ignore[arg-type]
