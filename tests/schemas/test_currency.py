"""Revenue per currency into one lifetime value at the configured rates, and the settings that give them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.currency import lifetime_value, parse_rates
from schemas.settings import Settings


def test_lifetime_value_converts_each_currency_and_names_the_ones_without_a_rate() -> None:
    ltv = lifetime_value({"EUR": 100.0, "USD": 20.0, "": 5.0, "JPY": 1000.0}, "USD", {"EUR": 1.1})
    assert ltv.to_dict() == {"value": 135.0, "currency": "USD", "unconverted": ["JPY"]}  # "" is the base currency


def test_the_settings_read_rates_as_code_equals_rate_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDP_BASE_CURRENCY", "eur")
    monkeypatch.setenv("CDP_CURRENCY_RATES", "usd=0.92, GBP=1.17")
    s = Settings()
    assert (s.base_currency, s.currency_rates) == ("EUR", {"USD": 0.92, "GBP": 1.17})
    monkeypatch.setenv("CDP_CURRENCY_RATES", "USD=cheap")
    with pytest.raises(ValidationError, match="USD: rate 'cheap' is not a number"):
        Settings()
    assert parse_rates("") == {}
