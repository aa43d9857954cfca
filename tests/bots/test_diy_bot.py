"""Tests of bots/diy_bot.py: the rule language's validation, scoring, firing and the shipped default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import talib
from pydantic import ValidationError

from bots.base import DataNeeds, MarketData
from bots.diy_bot import DiyBot, DiyParams, Operand, talib_functions
from common.config import load_config
from common.errors import ConfigError
from common.types import Candles, Direction, FloatArray, Levels, Setup
from tests.bots.checks import assert_fires_rarely, assert_no_look_ahead, real
from tp_sl_calculator import RiskSettings, calculate_levels

pytestmark = pytest.mark.unit

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
HOUR = 3_600_000
BOT = DiyBot()
DEFAULTS = DiyParams()

#: The risk block recommended for global_config.json: SL 1.5 ATR, TPs 1.5R / 2.5R / 4R.
RISK = {
    "sl_method": "atr",
    "sl_atr_mult": 1.5,
    "tp_method": "r",
    "tp_multiples": [1.5, 2.5, 4.0],
    "min_rr": 1.5,
}

CLOSE = {"price": "close"}
SMA3 = {"indicator": "SMA", "params": {"timeperiod": 3}}


def rules(long: list[dict[str, Any]] | None, short: list[dict[str, Any]] | None, **extra: Any) -> DiyParams:
    """Params with the given LONG / SHORT conditions (min_score 100 unless ``extra`` says otherwise)."""
    minimum = extra.pop("min_score", 100)
    return DiyParams.model_validate(
        {
            "long": None if long is None else {"min_score": minimum, "conditions": long},
            "short": None if short is None else {"min_score": minimum, "conditions": short},
            "lookback": 50,
            **extra,
        }
    )


#: close crosses above SMA 3 -> LONG, crosses below -> SHORT.
CROSS = rules(
    [{"left": CLOSE, "op": "crosses_above", "right": SMA3}],
    [{"left": CLOSE, "op": "crosses_below", "right": SMA3}],
)


def candles(close: list[float], volume: list[float] | None = None, placeholder: int | None = None) -> Candles:
    """Hourly candles from T0, each opening at the previous close (the first 1 away), wicks 0.5 long."""
    close_ = np.array(close, dtype=np.float64)
    open_ = np.r_[close_[0] + (1.0 if close_[1] < close_[0] else -1.0), close_[:-1]]
    flags = np.zeros(close_.size, dtype=np.bool_)
    if placeholder is not None:
        flags[placeholder] = True
    return Candles(
        symbol="BTC/USDT",
        timeframe="1h",
        ts=T0 + np.arange(close_.size, dtype=np.int64) * HOUR,
        open=open_,
        high=np.maximum(open_, close_) + 0.5,
        low=np.minimum(open_, close_) - 0.5,
        close=close_,
        volume=np.full(close_.size, 1000.0) if volume is None else np.array(volume, dtype=np.float64),
        placeholder=flags,
    )


def decline_then(*closes: float, bars: int = 20) -> Candles:
    """``bars`` closes falling 1.0 a bar from 100 (true range 2 each), then ``closes``."""
    return candles([100.0 - k for k in range(bars)] + list(closes))


def rise_then(*closes: float) -> Candles:
    """20 closes rising 1.0 a bar from 100, then ``closes``."""
    return candles([100.0 + k for k in range(20)] + list(closes))


def scan(series: Candles, params: DiyParams = DEFAULTS) -> list[Setup]:
    """The bot's setups on ``series``."""
    return list(BOT.scan(MarketData(candles=series), params))


def sig(value: float) -> float:
    """A context value as the bot rounds it: 8 significant digits."""
    return float(f"{value:.8g}")


# -- a simple rule on hand-built series --------------------------------------------------------------


def test_long_when_close_crosses_above_sma3() -> None:
    """Bar 20 closes at 90 over SMA 3 (84.33) after 81 <= 82: LONG at 90, ATR 36/14, SL 1.5 ATR, TPs in R."""
    series = decline_then(90.0)
    sma = talib.SMA(series.close, timeperiod=3)
    atr = talib.ATR(series.high, series.low, series.close, timeperiod=14)
    assert (series.close[19], sma[19]) == (81.0, 82.0)
    assert sma[20] == pytest.approx((82 + 81 + 90) / 3, rel=1e-12)
    # Every falling bar has a true range of 2; bar 20's range is 90.5 - 80.5 = 10: (13 x 2 + 10) / 14.
    assert atr[20] == pytest.approx(36 / 14, rel=1e-12)
    [setup] = scan(series, CROSS)
    assert setup == Setup(
        direction=Direction.LONG,
        bar_ts=T0 + 20 * HOUR,
        entry=90.0,
        reason="close crosses above SMA 3: 100 % long",
        atr=float(atr[20]),
        context={
            "long_score": 100.0,
            "short_score": 0.0,
            "atr": sig(atr[20]),
            "close": 90.0,
            "SMA 3": sig(sma[20]),
        },
    )
    risk = 1.5 * 36 / 14
    levels = calculate_levels(setup, RiskSettings.model_validate(RISK))
    assert levels.direction is Direction.LONG
    assert levels.entry == 90.0
    assert levels.sl == pytest.approx(90 - risk, rel=1e-12)
    assert levels.tps == pytest.approx((90 + 1.5 * risk, 90 + 2.5 * risk, 90 + 4 * risk), rel=1e-12)
    assert levels.tps == pytest.approx((95.785714285714, 99.642857142857, 105.428571428571), rel=1e-12)


def test_near_miss_close_just_below_sma3() -> None:
    """Bar 20 closing at 81.4, 0.07 under its SMA 3 (81.47), is no crossing: nothing fires."""
    series = decline_then(81.4)
    sma = talib.SMA(series.close, timeperiod=3)
    assert series.close[20] < sma[20]
    assert sma[20] - series.close[20] == pytest.approx(0.2 / 3, rel=1e-9)
    assert scan(series, CROSS) == []


def test_short_when_close_crosses_below_sma3() -> None:
    """The mirror: after 20 rising bars bar 20 closes at 110 under SMA 3 (115.67): SHORT, stop above entry."""
    series = rise_then(110.0)
    sma = talib.SMA(series.close, timeperiod=3)
    atr = talib.ATR(series.high, series.low, series.close, timeperiod=14)
    assert (series.close[19], sma[19]) == (119.0, 118.0)
    assert atr[20] == pytest.approx(36 / 14, rel=1e-12)
    [setup] = scan(series, CROSS)
    assert setup == Setup(
        direction=Direction.SHORT,
        bar_ts=T0 + 20 * HOUR,
        entry=110.0,
        reason="close crosses below SMA 3: 100 % short",
        atr=float(atr[20]),
        context={
            "long_score": 0.0,
            "short_score": 100.0,
            "atr": sig(atr[20]),
            "close": 110.0,
            "SMA 3": sig(sma[20]),
        },
    )
    risk = 1.5 * 36 / 14
    levels = calculate_levels(setup, RiskSettings.model_validate(RISK))
    assert levels.sl == pytest.approx(110 + risk, rel=1e-12)
    assert levels.tps == pytest.approx((110 - 1.5 * risk, 110 - 2.5 * risk, 110 - 4 * risk), rel=1e-12)
    assert isinstance(levels, Levels)


def test_fires_only_on_the_bar_the_score_first_reaches_the_minimum() -> None:
    """close > SMA 3 holds on bars 20-22 and 27: signals on 20 and 27 only, not while it lasts."""
    series = decline_then(90.0, 91.0, 92.0, 80.0, 79.0, 78.0, 77.0, 88.0)
    params = rules([{"left": CLOSE, "op": ">", "right": SMA3}], None)
    sma = talib.SMA(series.close, timeperiod=3)
    above = np.flatnonzero(series.close > sma)
    assert above.tolist() == [20, 21, 22, 27]
    setups = scan(series, params)
    assert [(s.bar_ts, s.direction) for s in setups] == [
        (T0 + 20 * HOUR, Direction.LONG),
        (T0 + 27 * HOUR, Direction.LONG),
    ]
    assert [s.reason for s in setups] == ["close > SMA 3: 100 % long"] * 2


def test_weights_and_min_score() -> None:
    """close > SMA 3 (weight 3) without the volume spike (weight 1) scores 75 %: fires at 75, not at 80."""
    conditions = [
        {"left": CLOSE, "op": ">", "right": SMA3, "weight": 3},
        {
            "left": {"price": "volume"},
            "op": ">",
            "right": {"indicator": "SMA", "params": {"timeperiod": 3}, "input": "volume"},
            "scale": 1.5,
            "weight": 1,
        },
    ]
    quiet = decline_then(90.0)
    [setup] = scan(quiet, rules(conditions, None, min_score=75))
    assert (setup.bar_ts, setup.reason) == (T0 + 20 * HOUR, "close > SMA 3: 75 % long")
    assert (setup.context["long_score"], setup.context["short_score"]) == (75.0, 0.0)
    assert setup.context["SMA 3 of volume"] == 1000.0
    assert setup.context["volume"] == 1000.0
    assert scan(quiet, rules(conditions, None, min_score=80)) == []  # the near miss: 75 < 80
    # 3000 > 1.5 x (1000 + 1000 + 3000) / 3 = 2500: both hold, 100 %.
    loud = candles(list(quiet.close), volume=[1000.0] * 20 + [3000.0])
    [setup] = scan(loud, rules(conditions, None, min_score=80))
    assert setup.reason == "close > SMA 3, volume > 1.5 x SMA 3 of volume: 100 % long"
    assert setup.context["SMA 3 of volume"] == sig(5000 / 3)


def test_no_signal_when_the_other_side_scores_as_high() -> None:
    """LONG and SHORT both 100 % (the same condition): neither side's score is above the other's."""
    same = [{"left": CLOSE, "op": "crosses_above", "right": SMA3}]
    assert scan(decline_then(90.0), rules(same, same)) == []
    assert len(scan(decline_then(90.0), rules(same, None))) == 1


def test_regime_decides_which_conditions_count() -> None:
    """After 40 falling bars ADX is far above 25 (trending): a "ranging" condition does not count there."""
    series = decline_then(70.0, bars=40)
    adx = talib.ADX(series.high, series.low, series.close, timeperiod=14)
    assert adx[40] > 90
    never = {"left": CLOSE, "op": "<", "right": 1}
    cross = {"left": CLOSE, "op": "crosses_above", "right": SMA3}
    [setup] = scan(series, rules([cross, {**never, "regime": "ranging"}], None))
    assert setup.reason == "close crosses above SMA 3: 100 % long"
    assert (setup.context["regime"], setup.context["regime_adx"]) == ("trending", round(float(adx[40]), 2))
    # Counted on trending bars: 1 of 2 weights, 50 % < 100.
    assert scan(series, rules([cross, {**never, "regime": "trending"}], None)) == []
    # With a threshold of 100 no bar is trending, so the "ranging" condition counts.
    assert scan(series, rules([cross, {**never, "regime": "ranging"}], None, regime_adx_threshold=100)) == []


def test_all_and_any_groups() -> None:
    """any(close > 1000; the crossing) holds at bar 20; all(...) does not; the group's label is the reason."""
    members = [
        {"left": CLOSE, "op": ">", "right": 1000},
        {"left": CLOSE, "op": "crosses_above", "right": SMA3},
    ]
    [setup] = scan(decline_then(90.0), rules([{"any": members, "weight": 2}], None))
    assert setup.reason == "any(close > 1000; close crosses above SMA 3): 100 % long"
    assert scan(decline_then(90.0), rules([{"all": members}], None)) == []
    named = rules([{"any": members, "name": "breakout"}], None)
    assert scan(decline_then(90.0), named)[0].reason == "breakout: 100 % long"


def test_placeholder_bar_never_fires() -> None:
    """The same crossing bar marked as an exchange placeholder candle is not a signal."""
    series = decline_then(90.0)
    marked = candles(list(series.close), placeholder=20)
    assert bool(marked.placeholder[20])
    assert scan(marked, CROSS) == []


def test_too_short_history_gives_nothing() -> None:
    """One or two bars (no previous bar to compare, no ATR): no setup; nor before ATR 14 is defined."""
    series = decline_then(90.0)
    assert scan(series.head(1), CROSS) == []
    assert scan(series.head(2), CROSS) == []
    # A crossing at bar 5 (ATR(14) still NaN there) does not fire.
    assert scan(candles([100.0, 99.0, 98.0, 97.0, 96.0, 99.0]), CROSS) == []


def test_needs_asks_for_the_lookback() -> None:
    """needs() asks for ``lookback`` bars of the bot's own timeframe and nothing else."""
    assert BOT.needs(DEFAULTS, "1h") == DataNeeds(lookback=1000)
    assert BOT.needs(CROSS, "15m") == DataNeeds(lookback=50)


def test_equal_indicators_share_one_computation() -> None:
    """RSI and RSI 14 (TA-Lib's default) have one cache key; BBANDS' outputs share their function's."""
    rsi = Operand.model_validate({"indicator": "RSI"})
    rsi14 = Operand.model_validate({"indicator": "RSI", "params": {"timeperiod": 14}})
    assert rsi.cache_key == rsi14.cache_key == ("RSI", (14,), "close")
    lower = Operand.model_validate({"indicator": "BBANDS", "output": "lowerband"})
    upper = Operand.model_validate({"indicator": "BBANDS", "params": {"nbdevup": 2}, "output": "upperband"})
    assert lower.cache_key == upper.cache_key
    volume = Operand.model_validate({"indicator": "SMA", "input": "volume"})
    assert volume.cache_key == ("SMA", (30,), "volume")


# -- validation ----------------------------------------------------------------------------------


def write_config(tmp_path: Path, params: object) -> Path:
    """A global_config.json with one diy_bot entry holding ``params``."""
    path = tmp_path / "global_config.json"
    content = {"bots": {"diy_bot": {"symbols": ["BTC/USDT"], "params": params, "risk": RISK}}}
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def long_condition(**change: object) -> dict[str, object]:
    """Params whose LONG side is one condition, RSI 14 < 30, with ``change`` applied."""
    condition: dict[str, object] = {
        "left": {"indicator": "RSI", "params": {"timeperiod": 14}},
        "op": "<",
        "right": 30,
    }
    condition.update(change)
    return {"long": {"min_score": 50, "conditions": [condition]}}


WHERE = "bots.diy_bot.params.long.conditions[0]"
_TALIB: Any = talib  # TA-Lib's stubs do not type get_functions
VALID_FUNCTIONS = ", ".join(sorted(name for name in _TALIB.get_functions() if name != "MAVP"))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            long_condition(left={"indicator": "RSX"}),
            f"{WHERE}.left.indicator = \"RSX\": Value error, unknown TA-Lib function 'RSX' "
            f"(did you mean RSI?); valid: {VALID_FUNCTIONS}",
        ),
        (
            long_condition(left={"indicator": "RSI", "params": {"timeperod": 14}}),
            f"{WHERE}.left.params = {{\"timeperod\": 14}}: Value error, RSI has no parameter 'timeperod' "
            "(valid: timeperiod)",
        ),
        (
            long_condition(left={"indicator": "MACD", "output": "hist"}),
            f"{WHERE}.left.output = \"hist\": Value error, MACD has no output 'hist' "
            "(valid: macd, macdsignal, macdhist)",
        ),
        (
            long_condition(left={"indicator": "MACD"}),
            f'{WHERE}.left = {{"indicator": "MACD"}}: Value error, MACD has 3 outputs: choose one with '
            "'output' (macd, macdsignal, macdhist)",
        ),
        (
            long_condition(left={"indicator": "RSI", "params": {"timeperiod": "14"}}),
            f'{WHERE}.left.params = {{"timeperiod": "14"}}: Value error, RSI parameter timeperiod must be an '
            'integer, got "14"',
        ),
        (
            long_condition(left={"indicator": "RSI", "params": {"timeperiod": 14.5}}),
            f'{WHERE}.left.params = {{"timeperiod": 14.5}}: Value error, RSI parameter timeperiod must be an '
            "integer, got 14.5",
        ),
        (
            long_condition(left={"indicator": "BBANDS", "params": {"nbdevup": True}, "output": "upperband"}),
            f'{WHERE}.left.params = {{"nbdevup": true}}: Value error, BBANDS parameter nbdevup must be a '
            "number, got true",
        ),
        (
            long_condition(left={"indicator": "RSI", "params": {"timeperiod": 1}}),
            f'{WHERE}.left.params = {{"timeperiod": 1}}: Value error, TA-Lib refuses RSI with '
            '{"timeperiod": 1} (TA_BAD_PARAM: a value is out of its range)',
        ),
        (
            long_condition(op="=>"),
            f"{WHERE}.op = \"=>\": Input should be '<', '<=', '>', '>=', 'crosses_above' or 'crosses_below'",
        ),
        (
            long_condition(left={"price": "mid"}),
            f"{WHERE}.left.price = \"mid\": Input should be 'open', 'high', 'low', 'close' or 'volume'",
        ),
        (
            long_condition(left={"indicator": "ADX", "input": "volume"}),
            f'{WHERE}.left.input = "volume": Value error, ADX reads several price fields: '
            "it takes no 'input'",
        ),
        (
            long_condition(left=5),
            f"{WHERE}.left = 5: Value error, left must be an indicator or a price field, not a number "
            "(put numbers right)",
        ),
        (
            long_condition(right=True),
            f"{WHERE}.right = true: Value error, an operand is an indicator, a price field or a number, "
            "not true / false",
        ),
        (
            long_condition(scale=2),
            f"{WHERE}.scale = 2: Value error, scale multiplies an indicator or a price; for a number write "
            "the product",
        ),
        (
            long_condition(weight="heavy"),
            f'{WHERE}.weight = "heavy": Input should be a valid number',
        ),
        (long_condition(colour="red"), f"{WHERE}.colour: unknown setting (check the spelling)"),
        (
            {"long": {"min_score": 50, "conditions": [{"left": {"price": "close"}, "right": 3}]}},
            f'{WHERE} = {{"left": {{"price": "close"}}, "right": 3}}: Value error, a condition needs left, '
            "op and right (or all / any)",
        ),
        (
            {
                "long": {
                    "min_score": 50,
                    "conditions": [{"all": [{"left": CLOSE, "op": ">", "right": 1, "weight": 2}]}],
                }
            },
            f'{WHERE}.all = [{{"left": {{"price": "close"}}, "op": ">", "right": 1, "weight": 2}}]: '
            "Value error, a condition inside all / any takes the group's weight and regime: remove weight",
        ),
        (
            {"long": {"min_score": 0, "conditions": [{"left": CLOSE, "op": ">", "right": 1}]}},
            "bots.diy_bot.params.long.min_score = 0: Input should be greater than 0",
        ),
        (
            {"lookback": 150},
            'bots.diy_bot.params = {"lookback": 150}: Value error, lookback 150 is too short: EMA 200 needs '
            "199 bars of history first, so lookback must be at least 201",
        ),
    ],
    ids=[
        "unknown-indicator",
        "unknown-parameter",
        "unknown-output",
        "missing-output",
        "string-for-int",
        "float-for-int",
        "bool-for-number",
        "talib-refuses",
        "bad-operator",
        "bad-price",
        "input-on-multi-input",
        "number-on-the-left",
        "bool-operand",
        "scale-on-a-number",
        "wrong-type-weight",
        "unknown-key",
        "missing-op",
        "weight-inside-group",
        "min-score-zero",
        "lookback-too-short",
    ],
)
def test_config_errors_are_one_line_with_the_json_path(tmp_path: Path, params: object, message: str) -> None:
    """Each bad rule is one ConfigError line from load_config: the JSON path, the value, the valid ones."""
    path = write_config(tmp_path, params)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {"diy_bot": DiyParams})
    assert "\n" not in str(caught.value)
    assert str(caught.value) == f"{path}: {message}"


def test_the_offered_functions_are_talibs_minus_mavp() -> None:
    """Every TA-Lib function whose inputs are OHLCV fields is offered: all but MAVP (its periods input)."""
    assert ", ".join(talib_functions()) == VALID_FUNCTIONS
    assert {"RSI", "MACD", "BBANDS", "STOCHRSI", "CDLENGULFING", "OBV"} <= set(talib_functions())


@pytest.mark.parametrize(
    "change",
    [
        {"regime_adx_threshold": 150},
        {"regime_adx_period": 1},
        {"atr_period": 0},
        {"lookback": 10},
        {"long": None, "short": None},
        {"long": {"min_score": 101, "conditions": [{"left": CLOSE, "op": ">", "right": 1}]}},
        {"long": {"min_score": 50, "conditions": []}},
        {"long": {"min_score": 50, "conditions": [{"left": CLOSE, "op": ">", "right": 1, "weight": 0}]}},
        {"long": {"min_score": 50, "conditions": [{"left": CLOSE, "op": ">", "right": 1, "regime": "bull"}]}},
        {"short": {"min_score": 50, "conditions": [{"all": [], "weight": 1}]}},
        {"short": {"min_score": 50, "conditions": [{"left": CLOSE, "op": ">", "right": 1, "all": [{}]}]}},
        {"unknown": 1},
    ],
)
def test_params_reject_out_of_range_values(change: dict[str, object]) -> None:
    """Out-of-range numbers, both sides off, empty lists, zero weights, mixed forms, unknown keys: refused."""
    with pytest.raises(ValidationError):
        DiyParams.model_validate(change)


#: The block to put under bots.diy_bot.params in global_config.json: every parameter at its default.
DEFAULT_BLOCK: dict[str, Any] = {
    "long": {
        "min_score": 60,
        "conditions": [
            {
                "left": {"indicator": "RSI", "params": {"timeperiod": 14}},
                "op": "<",
                "right": 30,
                "weight": 15,
            },
            {
                "left": {
                    "indicator": "MACD",
                    "params": {"fastperiod": 12, "slowperiod": 26, "signalperiod": 9},
                    "output": "macdhist",
                },
                "op": "crosses_above",
                "right": 0,
                "weight": 20,
            },
            {
                "left": {"indicator": "EMA", "params": {"timeperiod": 9}},
                "op": ">",
                "right": {"indicator": "EMA", "params": {"timeperiod": 21}},
                "weight": 15,
            },
            {
                "left": {"indicator": "ADX", "params": {"timeperiod": 14}},
                "op": ">",
                "right": 20,
                "weight": 10,
            },
            {
                "left": {"price": "close"},
                "op": "<",
                "right": {
                    "indicator": "BBANDS",
                    "params": {"timeperiod": 20, "nbdevup": 2.0, "nbdevdn": 2.0},
                    "output": "lowerband",
                },
                "weight": 10,
            },
            {
                "left": {"price": "volume"},
                "op": ">",
                "right": {"indicator": "SMA", "params": {"timeperiod": 20}, "input": "volume"},
                "scale": 1.2,
                "weight": 10,
            },
            {
                "left": {"indicator": "MOM", "params": {"timeperiod": 5}},
                "op": ">",
                "right": {"indicator": "ATR", "params": {"timeperiod": 14}},
                "scale": 0.5,
                "weight": 10,
            },
            {
                "left": {
                    "indicator": "STOCHRSI",
                    "params": {"timeperiod": 14, "fastk_period": 14, "fastd_period": 3},
                    "output": "fastk",
                },
                "op": "<",
                "right": 20,
                "weight": 10,
            },
            {
                "left": {"price": "close"},
                "op": ">",
                "right": {"indicator": "EMA", "params": {"timeperiod": 50}},
                "weight": 10,
            },
            {
                "left": {"price": "close"},
                "op": ">",
                "right": {"indicator": "EMA", "params": {"timeperiod": 200}},
                "weight": 10,
            },
        ],
    },
    "short": {
        "min_score": 60,
        "conditions": [
            {
                "left": {"indicator": "RSI", "params": {"timeperiod": 14}},
                "op": ">",
                "right": 70,
                "weight": 15,
            },
            {
                "left": {
                    "indicator": "MACD",
                    "params": {"fastperiod": 12, "slowperiod": 26, "signalperiod": 9},
                    "output": "macdhist",
                },
                "op": "crosses_below",
                "right": 0,
                "weight": 20,
            },
            {
                "left": {"indicator": "EMA", "params": {"timeperiod": 9}},
                "op": "<",
                "right": {"indicator": "EMA", "params": {"timeperiod": 21}},
                "weight": 15,
            },
            {
                "left": {"indicator": "ADX", "params": {"timeperiod": 14}},
                "op": ">",
                "right": 20,
                "weight": 10,
            },
            {
                "left": {"price": "close"},
                "op": ">",
                "right": {
                    "indicator": "BBANDS",
                    "params": {"timeperiod": 20, "nbdevup": 2.0, "nbdevdn": 2.0},
                    "output": "upperband",
                },
                "weight": 10,
            },
            {
                "left": {"price": "volume"},
                "op": ">",
                "right": {"indicator": "SMA", "params": {"timeperiod": 20}, "input": "volume"},
                "scale": 1.2,
                "weight": 10,
            },
            {
                "left": {"indicator": "MOM", "params": {"timeperiod": 5}},
                "op": "<",
                "right": {"indicator": "ATR", "params": {"timeperiod": 14}},
                "scale": -0.5,
                "weight": 10,
            },
            {
                "left": {
                    "indicator": "STOCHRSI",
                    "params": {"timeperiod": 14, "fastk_period": 14, "fastd_period": 3},
                    "output": "fastk",
                },
                "op": ">",
                "right": 80,
                "weight": 10,
            },
            {
                "left": {"price": "close"},
                "op": "<",
                "right": {"indicator": "EMA", "params": {"timeperiod": 50}},
                "weight": 10,
            },
            {
                "left": {"price": "close"},
                "op": "<",
                "right": {"indicator": "EMA", "params": {"timeperiod": 200}},
                "weight": 10,
            },
        ],
    },
    "regime_adx_period": 14,
    "regime_adx_threshold": 25,
    "atr_period": 14,
    "lookback": 1000,
}


def test_the_reported_default_block_loads_as_the_defaults(tmp_path: Path) -> None:
    """The params block for global_config.json loads to DiyParams() and dumps back to itself, key by key."""
    config = load_config(write_config(tmp_path, DEFAULT_BLOCK), {"diy_bot": DiyParams})
    bot = config.bots["diy_bot"]
    assert bot.params == DEFAULTS
    risk = bot.risk
    assert (risk.sl_method, risk.sl_atr_mult, risk.tp_method, risk.tp_multiples, risk.min_rr) == (
        "atr",
        1.5,
        "r",
        (1.5, 2.5, 4.0),
        1.5,
    )
    dumped = DEFAULTS.model_dump(mode="json")
    assert dumped == DEFAULT_BLOCK
    assert DiyParams.model_validate(dumped) == DEFAULTS


# -- the shipped default on real data ------------------------------------------------------------


def prev(values: FloatArray) -> FloatArray:
    """``values`` one bar later: NaN, then values[:-1]."""
    shifted: FloatArray = np.r_[np.nan, values[:-1]]
    return shifted


Reference = list[tuple[int, Direction, int, int, list[str]]]


def reference_default(series: Candles) -> Reference:
    """The default confluence straight from TA-Lib: (bar, side, long points, short points of 120, held)."""
    c, v = series.close, series.volume
    rsi = talib.RSI(c, timeperiod=14)
    hist = talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)[2]
    ema9, ema21, ema50, ema200 = (talib.EMA(c, timeperiod=n) for n in (9, 21, 50, 200))
    adx = talib.ADX(series.high, series.low, c, timeperiod=14)
    upper, _, lower = talib.BBANDS(c, timeperiod=20, nbdevup=2.0, nbdevdn=2.0)
    volume_sma = talib.SMA(v, timeperiod=20)
    mom = talib.MOM(c, timeperiod=5)
    atr = talib.ATR(series.high, series.low, c, timeperiod=14)
    fastk = talib.STOCHRSI(c, timeperiod=14, fastk_period=14, fastd_period=3)[0]
    inputs = [
        rsi,
        hist,
        prev(hist),
        ema9,
        ema21,
        ema50,
        ema200,
        adx,
        upper,
        lower,
        volume_sma,
        mom,
        atr,
        fastk,
    ]
    valid = np.logical_and.reduce([np.isfinite(x) for x in inputs])
    long_rules = [
        ("RSI 14 < 30", 15, rsi < 30),
        ("MACD 12/26/9 macdhist crosses above 0", 20, (hist > 0) & (prev(hist) <= 0)),
        ("EMA 9 > EMA 21", 15, ema9 > ema21),
        ("ADX 14 > 20", 10, adx > 20),
        ("close < BBANDS 20/2/2 lowerband", 10, c < lower),
        ("volume > 1.2 x SMA 20 of volume", 10, v > volume_sma * 1.2),
        ("MOM 5 > 0.5 x ATR 14", 10, mom > atr * 0.5),
        ("STOCHRSI 14/14/3 fastk < 20", 10, fastk < 20),
        ("close > EMA 50", 10, c > ema50),
        ("close > EMA 200", 10, c > ema200),
    ]
    short_rules = [
        ("RSI 14 > 70", 15, rsi > 70),
        ("MACD 12/26/9 macdhist crosses below 0", 20, (hist < 0) & (prev(hist) >= 0)),
        ("EMA 9 < EMA 21", 15, ema9 < ema21),
        ("ADX 14 > 20", 10, adx > 20),
        ("close > BBANDS 20/2/2 upperband", 10, c > upper),
        ("volume > 1.2 x SMA 20 of volume", 10, v > volume_sma * 1.2),
        ("MOM 5 < -0.5 x ATR 14", 10, mom < atr * -0.5),
        ("STOCHRSI 14/14/3 fastk > 80", 10, fastk > 80),
        ("close < EMA 50", 10, c < ema50),
        ("close < EMA 200", 10, c < ema200),
    ]
    long = np.sum([weight * holds.astype(np.int64) for _, weight, holds in long_rules], axis=0)
    short = np.sum([weight * holds.astype(np.int64) for _, weight, holds in short_rules], axis=0)
    found: Reference = []
    for direction, mine, other, table in (
        (Direction.LONG, long, short, long_rules),
        (Direction.SHORT, short, long, short_rules),
    ):
        qualifies = valid & (mine >= 72) & (mine > other)  # 60 % of 120 points
        starts = qualifies & ~np.r_[False, qualifies[:-1]] & np.r_[False, valid[:-1]]
        starts &= ~series.placeholder & (atr > 0)
        found += [
            (int(i), direction, int(long[i]), int(short[i]), [label for label, _, holds in table if holds[i]])
            for i in np.flatnonzero(starts)
        ]
    return sorted(found, key=lambda row: row[0])


@pytest.mark.parametrize(
    "relative", ["binance_spot/ETH_USDT-4h.csv.gz", "binance_usdm_perp/BTC_USDT-1h.csv.gz"]
)
def test_default_rules_match_an_independent_computation(relative: str) -> None:
    """On a whole real series the default fires on exactly the bars, sides, scores, reasons TA-Lib gives."""
    series = real(relative)
    setups = scan(series)
    expected = reference_default(series)
    index_of = {int(ts): i for i, ts in enumerate(series.ts)}
    assert [(index_of[s.bar_ts], s.direction) for s in setups] == [(row[0], row[1]) for row in expected]
    for setup, (i, direction, long, short, held) in zip(setups, expected, strict=True):
        assert setup.entry == float(series.close[i])
        assert setup.context["long_score"] == round(100 * long / 120, 1)
        assert setup.context["short_score"] == round(100 * short / 120, 1)
        mine = long if direction is Direction.LONG else short
        assert setup.reason == f"{', '.join(held)}: {100 * mine / 120:.0f} % {direction.value.lower()}"
        assert setup.atr is not None
        assert setup.context["ATR 14"] == sig(setup.atr)
        assert setup.context["close"] == sig(float(series.close[i]))


def test_no_look_ahead_on_real_btc_15m() -> None:
    """At 50 seeded cut points t, scanning the first t bars gives the setups on bar t-1 as scanning all."""
    assert_no_look_ahead(scan, real("binance_spot/BTC_USDT-15m.csv.gz", 3000), min_nonempty=25)


@pytest.mark.parametrize("relative", ["binance_spot/ETH_USDT-4h.csv.gz", "binance_spot/BTC_USDT-4h.csv.gz"])
def test_fires_sometimes_but_rarely_on_a_whole_real_series(relative: str) -> None:
    """On a whole real 4h series the default fires at least once and on under 5 % of bars; levels come out."""
    series = real(relative)
    setups = scan(series)
    assert_fires_rarely(setups, series)
    risk = RiskSettings.model_validate(RISK)
    for setup in setups:
        assert setup.stop is None
        levels = calculate_levels(setup, risk)
        assert setup.atr is not None
        assert levels.risk == pytest.approx(1.5 * setup.atr, rel=1e-9)
