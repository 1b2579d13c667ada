"""Revenue in several currencies, and a lifetime value in one.

Revenue is kept per currency (``revenue_by_currency``: what was paid, as it was paid); a lifetime value needs one
unit, so it converts each currency at a configured rate (``CDP_BASE_CURRENCY``, ``CDP_CURRENCY_RATES``). Rates are
settings, not a feed: a CDP reporting LTV wants figures that stay put between two reads, and the rates a finance
team closes a month with. Revenue without a currency counts as the base currency; a currency without a rate is
left out of the value and named, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["CurrencyValue", "lifetime_value", "parse_rates"]

_CODE = re.compile(r"^[A-Z]{3}$")


def _code(text: str) -> str:
    code = text.strip().upper()
    if not _CODE.match(code):
        raise ValueError(f"{text!r} is not a three-letter currency code (ISO 4217, e.g. EUR)")
    return code


def parse_rates(text: str | Mapping[str, float]) -> dict[str, float]:
    """``"EUR=1.08,GBP=1.27"`` (one unit of each currency in the base currency) or a mapping -> {code: rate}."""
    pairs = text.items() if isinstance(text, Mapping) else (p.partition("=")[::2] for p in text.split(",") if p.strip())
    rates: dict[str, float] = {}
    for code, rate in pairs:
        try:
            value = float(rate)
        except (TypeError, ValueError):
            raise ValueError(f"{code}: rate {rate!r} is not a number (write CODE=RATE, e.g. EUR=1.08)") from None
        if not value > 0:
            raise ValueError(f"{code}: rate must be positive")
        rates[_code(str(code))] = value
    return rates


@dataclass(frozen=True, slots=True)
class CurrencyValue:
    """A lifetime value in the base currency and the currencies it could not convert."""

    value: float
    currency: str
    unconverted: list[str]

    def to_dict(self) -> dict[str, object]:
        return {"value": self.value, "currency": self.currency, "unconverted": self.unconverted}


def lifetime_value(by_currency: Mapping[str, float], base: str, rates: Mapping[str, float]) -> CurrencyValue:
    """The sum of ``by_currency`` in ``base`` (``""``: the base currency itself)."""
    total = 0.0
    unconverted = []
    for currency, amount in sorted(by_currency.items()):
        code = currency.strip().upper() or base
        rate = 1.0 if code == base else rates.get(code)
        if rate is None:
            unconverted.append(code)
        else:
            total += amount * rate
    return CurrencyValue(round(total, 2), base, unconverted)
