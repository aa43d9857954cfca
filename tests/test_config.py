"""Tests of common.config: global_config.json validation (one-line errors naming the JSON path) and env."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from bots.psar_bot import PsarParams
from common.config import Settings, load_config
from common.errors import ConfigError
from tp_sl_calculator import RiskSettings

pytestmark = pytest.mark.unit

MODELS: dict[str, type[BaseModel]] = {"psar_bot": PsarParams}


def write_config(tmp_path: Path, content: object) -> Path:
    """Write ``content`` as JSON to a config file in ``tmp_path``."""
    path = tmp_path / "global_config.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def psar(**entry: object) -> dict[str, object]:
    """A config with one psar_bot entry: symbols BTC/USDT plus ``entry``."""
    return {"bots": {"psar_bot": {"symbols": ["BTC/USDT"], **entry}}}


def config_error(path: Path) -> str:
    """The message of the ConfigError that loading ``path`` raises (asserting it is one line)."""
    with pytest.raises(ConfigError) as caught:
        load_config(path, MODELS)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_minimal_config_gets_every_default(tmp_path: Path) -> None:
    """Only symbols given: timeframe 1h, cooldown 60 min, 5 open, 24 h timeout, default params and risk."""
    path = write_config(tmp_path, psar())
    config = load_config(path, MODELS)
    bot = config.bots["psar_bot"]
    assert (bot.name, bot.enabled, bot.symbols, bot.timeframe) == ("psar_bot", True, ("BTC/USDT",), "1h")
    assert (bot.cooldown_ms, bot.max_open_signals, bot.timeout_ms) == (3_600_000, 5, 86_400_000)
    assert bot.params == PsarParams()
    assert isinstance(bot.params, PsarParams)
    assert (bot.params.acceleration, bot.params.adx_min, bot.params.lookback) == (0.02, 30.0, 300)
    assert bot.risk == RiskSettings()
    assert config.path == path
    assert (config.tracking.fee_pct_per_side, config.exchange.timeout_ms) == (0.05, 10_000)


def test_bot_overrides_and_risk_layering(tmp_path: Path) -> None:
    """Bot values override defaults; bot risk layers over global risk; timeout falls back to tracking."""
    content = psar(
        timeframe="4h",
        cooldown_minutes=90,
        max_open_signals=2,
        params={"adx_min": 25, "min_trend_bars": 5},
        risk={"tp_multiples": [2.0, 3.0]},
    )
    content["risk"] = {"min_rr": 2.0}
    content["tracking"] = {"timeout_hours": 12}
    config = load_config(write_config(tmp_path, content), MODELS)
    bot = config.bots["psar_bot"]
    assert (bot.timeframe, bot.cooldown_ms, bot.max_open_signals, bot.timeout_ms) == (
        "4h",
        5_400_000,
        2,
        43_200_000,
    )
    assert isinstance(bot.params, PsarParams)
    assert (bot.params.adx_min, bot.params.min_trend_bars) == (25.0, 5)
    assert (bot.risk.min_rr, bot.risk.tp_multiples, bot.risk.sl_method) == (2.0, (2.0, 3.0), "atr")
    assert config.risk.tp_multiples == (1.5, 2.5, 4.0)


def test_symbols_choose_their_market_and_risk(tmp_path: Path) -> None:
    """Plain symbols take the default market; entries choose theirs; symbol risk layers over the bot's."""
    content = psar(
        symbols=[
            "BTC/USDT",
            {"symbol": "ETH/USDT", "market": "spot", "risk": {"min_stop_pct": 0.4}},
            "SOL/USDT:USDT",
        ],
        risk={"min_rr": 2.0},
    )
    content["exchange"] = {"default_market": "swap"}
    bot = load_config(write_config(tmp_path, content), MODELS).bots["psar_bot"]
    assert bot.symbols == ("BTC/USDT:USDT", "ETH/USDT", "SOL/USDT:USDT")
    assert bot.risk_for("BTC/USDT:USDT") is bot.risk
    eth = bot.risk_for("ETH/USDT")
    assert (eth.min_stop_pct, eth.min_rr, bot.risk.min_stop_pct) == (0.4, 2.0, 0.2)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            {"bots": {"foo_bot": {"symbols": ["BTC/USDT"]}}},
            "bots.foo_bot: unknown bot (known: psar_bot)",
        ),
        (
            psar(cooldown_minutes="soon"),
            'bots.psar_bot.cooldown_minutes = "soon": Input should be a valid number, '
            "unable to parse string as a number",
        ),
        (
            psar(cooldown_minutes=-5),
            "bots.psar_bot.cooldown_minutes = -5: Input should be greater than or equal to 0",
        ),
        (
            {"bots": {"psar_bot": {"timeframe": "1h"}}},
            "bots.psar_bot.symbols: required setting is missing",
        ),
        (
            psar(symbols=[]),
            "bots.psar_bot.symbols = []: List should have at least 1 item after validation, not 0",
        ),
        (
            psar(symbols=["BTCUSDT"]),
            "bots.psar_bot.symbols[0].symbol = \"BTCUSDT\": Value error, symbol 'BTCUSDT' is not a ccxt "
            "unified symbol like BTC/USDT or BTC/USDT:USDT",
        ),
        (
            psar(symbols=["BTC/USDT", {"symbol": "ETH/USDT", "market": "futures"}]),
            "bots.psar_bot.symbols[1].market = \"futures\": Input should be 'spot' or 'swap'",
        ),
        (
            psar(symbols=[{"symbol": "BTC/USDT:USDT", "market": "spot"}]),
            "bots.psar_bot.symbols[0] = \"BTC/USDT:USDT\": symbol 'BTC/USDT:USDT' is a perpetual swap "
            "but market is spot",
        ),
        (
            psar(symbols=["BTC/USDT:USDT", {"symbol": "BTC/USDT", "market": "swap"}]),
            'bots.psar_bot.symbols[1] = "BTC/USDT": BTC/USDT:USDT is listed twice',
        ),
        (
            psar(timeframe="8h", symbols=["BTC/USDT:USDT", "ETH/USDT"]),
            'bots.psar_bot.symbols[1] = "ETH/USDT": MEXC spot has no 8h candles '
            '(use {"symbol": "ETH/USDT", "market": "swap"} or another timeframe)',
        ),
        (
            psar(symbols=[{"symbol": "BTC/USDT", "risk": {"min_rr": -2}}]),
            "bots.psar_bot.symbols[0].risk.min_rr = -2: Input should be greater than or equal to 0",
        ),
        (
            psar(symbols=[{"symbol": "BTC/USDT", "size": 3}]),
            "bots.psar_bot.symbols[0].size: unknown setting (check the spelling)",
        ),
        (
            psar(params={"accel": 0.1}),
            "bots.psar_bot.params.accel: unknown setting (check the spelling)",
        ),
        (
            psar(params={"adx_min": 150}),
            "bots.psar_bot.params.adx_min = 150: Input should be less than or equal to 100",
        ),
        (
            psar(params={"acceleration": 0.5, "maximum": 0.2}),
            'bots.psar_bot.params = {"acceleration": 0.5, "maximum": 0.2}: '
            "Value error, acceleration must not exceed maximum",
        ),
        (
            psar(timeframe="2h"),
            'bots.psar_bot.timeframe = "2h": Value error, timeframe must be one of '
            "1m, 5m, 15m, 30m, 1h, 4h, 8h, 1d, 1w",
        ),
        (
            psar(risk={"min_rr": -1}),
            "bots.psar_bot.risk.min_rr = -1: Input should be greater than or equal to 0",
        ),
        (
            psar(risk={"tp_multiples": [0]}),
            "bots.psar_bot.risk.tp_multiples[0] = 0: Input should be greater than 0",
        ),
        (
            psar(risk={"min_rr": True}),
            "bots.psar_bot.risk.min_rr = true: Input should be a valid number",
        ),
        (
            psar(risk={"stop_method": "atr"}),
            "bots.psar_bot.risk.stop_method: unknown setting (check the spelling)",
        ),
        (
            {"risk": {"sl_method": "magic"}, "bots": {"psar_bot": {"symbols": ["BTC/USDT"]}}},
            "risk.sl_method = \"magic\": Input should be 'atr', 'structure' or 'fibonacci'",
        ),
        (
            {"exchange": {"timeout_ms": 10}, "bots": {"psar_bot": {"symbols": ["BTC/USDT"]}}},
            "exchange.timeout_ms = 10: Input should be greater than or equal to 1000",
        ),
        (
            {"bots": {"psar_bot": {"symbols": ["BTC/USDT"]}}, "extra": 1},
            "extra: unknown setting (check the spelling)",
        ),
        ({}, "bots: required setting is missing"),
        ([], "(top level) must be a JSON object"),
    ],
    ids=[
        "unknown-bot",
        "wrong-type",
        "negative-cooldown",
        "missing-symbols",
        "empty-symbols",
        "bad-symbol",
        "bad-market",
        "swap-symbol-on-spot",
        "symbol-twice-after-resolving",
        "8h-on-spot",
        "bad-symbol-risk",
        "unknown-symbol-setting",
        "unknown-param",
        "param-out-of-range",
        "param-cross-field",
        "bad-timeframe",
        "bad-risk-override",
        "bad-risk-list-item",
        "bool-for-number",
        "unknown-risk-key",
        "bad-global-risk",
        "bad-exchange",
        "unknown-top-level",
        "no-bots",
        "not-an-object",
    ],
)
def test_invalid_config_gives_one_line_naming_the_json_path(
    tmp_path: Path, content: object, message: str
) -> None:
    """Each invalid config raises ConfigError '<file>: <json path> ...' on one line, exactly worded."""
    path = write_config(tmp_path, content)
    assert config_error(path) == f"{path}: {message}"


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    """A trailing comma on line 2 is reported with its line and column."""
    path = tmp_path / "global_config.json"
    path.write_text('{"bots": {\n  "psar_bot": {"symbols": ["BTC/USDT"],}\n}}', encoding="utf-8")
    assert config_error(path) == (
        f"{path}: invalid JSON at line 2 column 40: Expecting property name enclosed in double quotes"
    )


def test_missing_file(tmp_path: Path) -> None:
    """A missing file says so and names the ways to point at another one."""
    path = tmp_path / "absent.json"
    assert config_error(path) == f"{path}: file not found (set --config or BOTS_CONFIG)"


# -- the environment ------------------------------------------------------------------------------


def test_settings_defaults_from_an_empty_environment() -> None:
    """No variables: default paths, no token (dry-run), no chats, no overrides, no secrets."""
    settings = Settings.from_env({})
    assert (settings.config_path, settings.state_dir, settings.log_dir) == (
        Path("global_config.json"),
        Path("state"),
        Path("logs"),
    )
    assert settings.telegram_token is None
    assert (settings.telegram_default_chat, dict(settings.telegram_bot_chats)) == (None, {})
    assert (settings.telegram_api_base_url, settings.mexc_api_base_url) == (None, None)
    assert settings.secrets() == []
    assert settings.chat_for("psar_bot") is None


def test_chat_routing_prefers_the_bot_variable() -> None:
    """TELEGRAM_CHAT_PSAR_BOT wins over TELEGRAM_CHAT_ID for psar_bot; other bots use the default."""
    settings = Settings.from_env(
        {
            "TELEGRAM_CHAT_ID": "-100111",
            "TELEGRAM_CHAT_PSAR_BOT": " -100222 ",
            "TELEGRAM_CHAT_EMPTY_BOT": "  ",
        }
    )
    assert settings.chat_for("psar_bot") == "-100222"
    assert settings.chat_for("PSAR_BOT") == "-100222"
    assert settings.chat_for("rsi_bot") == "-100111"
    assert settings.chat_for("empty_bot") == "-100111"  # blank means unset
    assert dict(settings.telegram_bot_chats) == {"psar_bot": "-100222"}


def test_secrets_and_paths_from_the_environment(tmp_path: Path) -> None:
    """secrets() lists the token, API key and secret (never printed in repr); paths and URLs are read."""
    env = {
        "TELEGRAM_BOT_TOKEN": "123456:AAsecret-token",
        "MEXC_API_KEY": "mx-key-1",
        "MEXC_API_SECRET": " mx-secret-2 ",
        "BOTS_CONFIG": str(tmp_path / "c.json"),
        "BOTS_STATE_DIR": str(tmp_path / "st"),
        "BOTS_LOG_DIR": str(tmp_path / "lg"),
        "TELEGRAM_API_BASE_URL": "http://127.0.0.1:8081/bot",
        "MEXC_API_BASE_URL": "https://127.0.0.1:9000",
    }
    settings = Settings.from_env(env)
    assert settings.secrets() == ["123456:AAsecret-token", "mx-key-1", "mx-secret-2"]
    for secret in settings.secrets():
        assert secret not in repr(settings)
    assert (settings.config_path, settings.state_dir, settings.log_dir) == (
        tmp_path / "c.json",
        tmp_path / "st",
        tmp_path / "lg",
    )
    assert settings.telegram_api_base_url == "http://127.0.0.1:8081/bot"
    assert settings.mexc_api_base_url == "https://127.0.0.1:9000"
    assert Settings.from_env(env, config_override=Path("x.json")).config_path == Path("x.json")
    assert Settings.from_env({"MEXC_API_KEY": "k"}).secrets() == ["k"]


@pytest.mark.parametrize(
    ("name", "value"),
    [("TELEGRAM_API_BASE_URL", "ftp://example.org"), ("MEXC_API_BASE_URL", "127.0.0.1:9000")],
)
def test_bad_base_url_is_a_config_error(name: str, value: str) -> None:
    """A base URL without http:// or https:// is refused with one line naming the variable."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value})
    assert str(caught.value) == f"environment: {name} = {value!r}: must start with http:// or https://"


def test_exit_plans_layer_tracking_defaults_and_bot_overrides(tmp_path: Path) -> None:
    """tp_fractions / break_even_after_tp1 fall back to the tracking section; trailing_stop is per bot."""
    content = psar(tp_fractions=[0.5, 0.25], trailing_stop=True)
    content["tracking"] = {"break_even_after_tp1": False, "tp_fractions": [1.0], "fee_pct_per_side": 0.04}
    bot = load_config(write_config(tmp_path, content), MODELS).bots["psar_bot"]
    plan = bot.exit_plan(0.04)
    assert (plan.tp_fractions, plan.break_even_after_tp1, plan.trailing, plan.fee_pct_per_side) == (
        (0.5, 0.25),
        False,
        True,
        0.04,
    )
    default = load_config(write_config(tmp_path, psar()), MODELS).bots["psar_bot"].exit_plan(0.05)
    assert (default.tp_fractions, default.break_even_after_tp1, default.trailing) == (None, True, False)
    assert default.timeout_ms == 86_400_000


@pytest.mark.parametrize(
    ("fractions", "problem"),
    [
        ([0.7, 0.5], "the fractions add up to 1.2; at most 1"),
        ([1.5], "each fraction must be between 0 and 1"),
        ([], "give 1 to 3 fractions (TP1, TP2, TP3)"),
        ([0.25, 0.25, 0.25, 0.25], "give 1 to 3 fractions (TP1, TP2, TP3)"),
    ],
)
def test_bad_take_profit_fractions_are_one_line(tmp_path: Path, fractions: list[float], problem: str) -> None:
    """Fractions that do not describe a position give one line naming the bot's setting and the problem."""
    message = config_error(write_config(tmp_path, psar(tp_fractions=fractions)))
    assert message.startswith(f"{tmp_path / 'global_config.json'}: bots.psar_bot.tp_fractions = ")
    assert message.endswith(problem)
