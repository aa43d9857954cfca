"""Prices as people read them: the market's decimals, no float noise.

Shared by the alert cards and the strategies' reason lines (which must not import the store).
"""

from __future__ import annotations

import math
from decimal import Decimal


def format_price(value: float, tick_size: float | None = None) -> str:
    """A price with the market's decimals (from its tick) or, without a tick, 6 significant digits.

    Six significant digits keep BTC at 2 decimals (43250.51) and small coins readable (0.0812345)
    without float noise such as 0.30000000000000004.
    """
    if tick_size is not None and tick_size > 0:
        # As many decimals as the tick itself has: 0.01 -> 2, 0.25 -> 2, 5 -> 0.
        exponent = Decimal(repr(tick_size)).normalize().as_tuple().exponent
        decimals = max(0, -int(exponent))
    else:
        magnitude = math.floor(math.log10(abs(value))) if value else 0
        decimals = max(2, 5 - magnitude)
    return f"{value:.{decimals}f}"
