"""global_config.json and the environment, validated once at start.

Any error becomes ONE line naming the file, the JSON path, the bad value and what is allowed
(``ConfigError``); the CLI prints it and exits with status 2 before touching the network.
Secrets come only from the environment (or ``.env``), never from global_config.json.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from common.errors import ConfigError
from common.tracker import ExitPlan
from tp_sl_calculator import RiskSettings

#: Timeframes MEXC offers through ccxt with a fixed candle length (1M is calendar-based; not used).
MEXC_TIMEFRAMES = ("1m", "5m", "15m", "30m", "1h", "4h", "8h", "1d", "1w")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExchangeSettings(_Strict):
    """The ``exchange`` section: how the live market source talks to MEXC."""

    name: Literal["mexc"] = "mexc"
    default_market: Literal["spot", "swap"] = "spot"
    timeout_ms: int = Field(10_000, ge=1_000, le=120_000)
    candle_close_delay_s: float = Field(3.0, ge=0, le=300)
    retry_attempts: int = Field(3, ge=1, le=10)
    breaker_failures: int = Field(5, ge=1, le=100)
    breaker_reset_s: float = Field(60.0, gt=0, le=3_600)
    # MEXC allows about 20 requests per second per IP; one process stays at half of that.
    requests_per_second: float = Field(10.0, gt=0, le=20)


class TelegramSettings(_Strict):
    """The ``telegram`` section: delivery behaviour (tokens and chats come from the environment).

    The limits default to Telegram's own: one message per second in a chat, 20 per minute in a
    group or channel, 30 per second per bot token.
    """

    per_chat_interval_s: float = Field(1.0, ge=0, le=60)
    group_per_minute: int = Field(20, ge=1, le=60)
    bot_per_second: int = Field(30, ge=1, le=30)
    send_timeout_s: float = Field(15.0, gt=0, le=120)
    late_alert_minutes: float = Field(30.0, gt=0)
    chart_candles: int = Field(100, ge=20, le=500)


class TrackingSettings(_Strict):
    """The ``tracking`` section: how open signals are followed to their outcome."""

    fee_pct_per_side: float = Field(0.05, ge=0, le=1)
    timeout_hours: float = Field(24.0, gt=0, le=24 * 90)
    # Shares of the original size closed at TP1, TP2, TP3 (None: equal shares over the signal's
    # targets); the signal's last target always closes what remains.
    tp_fractions: list[float] | None = None
    break_even_after_tp1: bool = True

    @field_validator("tp_fractions")
    @classmethod
    def _fractions(cls, value: list[float] | None) -> list[float] | None:
        return _check_fractions(value)


def _check_fractions(value: list[float] | None) -> list[float] | None:
    """Take-profit shares: 1 to 3 numbers in [0, 1] that add up to at most 1."""
    if value is None:
        return None
    if not 1 <= len(value) <= 3:
        raise ValueError("give 1 to 3 fractions (TP1, TP2, TP3)")
    if any(not 0 <= f <= 1 for f in value):
        raise ValueError("each fraction must be between 0 and 1")
    if sum(value) > 1 + 1e-9:
        raise ValueError(f"the fractions add up to {sum(value):g}; at most 1")
    return value


class RunnerSettings(_Strict):
    """The ``runner`` section: the loop's own limits."""

    shutdown_timeout_s: float = Field(30.0, gt=0, le=300)
    status_interval_s: float = Field(300.0, gt=0)


class HealthSettings(_Strict):
    """The ``health`` section: the HTTP health and metrics endpoints (always on 127.0.0.1).

    Served by ``run --all`` (the fleet) when ``fleet`` is true and by a one-bot process when
    ``per_bot`` is true: per-bot units would otherwise all want the same port. ``live_window_s`` is
    how long a cycle may go without progress before ``/health/live`` says the loop is stuck, when
    systemd gives no watchdog period (with one, the watchdog period is the window).
    """

    port: int = Field(9464, ge=1, le=65_535)
    fleet: bool = True
    per_bot: bool = False
    live_window_s: float = Field(120.0, ge=1, le=3_600)


def _check_unified(symbol: str) -> str:
    base, sep, rest = symbol.partition("/")
    if not base or not sep or not rest or symbol != symbol.strip():
        raise ValueError(f"symbol {symbol!r} is not a ccxt unified symbol like BTC/USDT or BTC/USDT:USDT")
    return symbol


class SymbolEntry(_Strict):
    """A symbol with its own settings: ``{"symbol": "ETH/USDT", "market": "swap", "risk": {...}}``."""

    symbol: str
    market: Literal["spot", "swap"] | None = None
    risk: dict[str, Any] = Field(default_factory=dict)

    @field_validator("symbol")
    @classmethod
    def _unified(cls, value: str) -> str:
        return _check_unified(value)


def resolve_symbol(symbol: str, market: str | None, default_market: str) -> str:
    """The ccxt unified symbol of ``symbol`` on ``market``: 'BTC/USDT' on swap is 'BTC/USDT:USDT'.

    A symbol that names its settle currency (``BTC/USDT:USDT``) is a swap whatever the default;
    an explicit ``market: spot`` for it is a contradiction and raises ``ValueError``.
    """
    if ":" in symbol:
        if market == "spot":
            raise ValueError(f"symbol {symbol!r} is a perpetual swap but market is spot")
        return symbol
    if (market or default_market) == "swap":
        return f"{symbol}:{symbol.partition('/')[2]}"
    return symbol


class BotEntry(_Strict):
    """One bot's section under ``bots``. Only ``symbols`` has no default.

    A symbol is a plain string (its market is the exchange section's ``default_market``) or a
    :class:`SymbolEntry` choosing its market and overriding the bot's risk settings.
    """

    enabled: bool = True
    symbols: list[SymbolEntry] = Field(min_length=1)
    timeframe: str = "1h"
    cooldown_minutes: float = Field(60.0, ge=0)
    max_open_signals: int = Field(5, ge=1, le=1_000)
    timeout_hours: float | None = Field(None, gt=0)
    tp_fractions: list[float] | None = None  # default: tracking.tp_fractions
    break_even_after_tp1: bool | None = None  # default: tracking.break_even_after_tp1
    trailing_stop: bool = False  # trail the stop along the strategy's line (psar_bot, most_bot)
    params: dict[str, Any] = Field(default_factory=dict)
    risk: dict[str, Any] = Field(default_factory=dict)
    chart: bool = True

    @field_validator("timeframe")
    @classmethod
    def _known_timeframe(cls, value: str) -> str:
        if value not in MEXC_TIMEFRAMES:
            raise ValueError(f"timeframe must be one of {', '.join(MEXC_TIMEFRAMES)}")
        return value

    @field_validator("tp_fractions")
    @classmethod
    def _fractions(cls, value: list[float] | None) -> list[float] | None:
        return _check_fractions(value)

    @field_validator("symbols", mode="before")
    @classmethod
    def _plain_symbols(cls, values: Any) -> Any:
        # A plain string is the short form of {"symbol": ...}; errors then point at symbols[i].symbol.
        if isinstance(values, list):
            return [{"symbol": value} if isinstance(value, str) else value for value in values]
        return values


class ConfigFile(_Strict):
    """The whole of global_config.json."""

    exchange: ExchangeSettings = Field(default_factory=ExchangeSettings)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    runner: RunnerSettings = Field(default_factory=RunnerSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    risk: dict[str, Any] = Field(default_factory=dict)
    bots: dict[str, BotEntry]


@dataclass(frozen=True)
class BotSettings:
    """One bot's settings after validation: its parameters parsed by the strategy's own model."""

    name: str
    enabled: bool
    symbols: tuple[str, ...]  # ccxt unified symbols, swaps with their settle currency
    timeframe: str
    cooldown_ms: int
    max_open_signals: int
    timeout_ms: int
    params: BaseModel
    risk: RiskSettings
    symbol_risk: Mapping[str, RiskSettings] = field(default_factory=dict)
    chart: bool = True
    tp_fractions: tuple[float, ...] | None = None
    break_even_after_tp1: bool = True
    trailing_stop: bool = False

    def exit_plan(self, fee_pct_per_side: float) -> ExitPlan:
        """How the tracker closes this bot's signals."""
        return ExitPlan(
            timeout_ms=self.timeout_ms,
            fee_pct_per_side=fee_pct_per_side,
            tp_fractions=self.tp_fractions,
            break_even_after_tp1=self.break_even_after_tp1,
            trailing=self.trailing_stop,
        )

    def risk_for(self, symbol: str) -> RiskSettings:
        """The risk settings for one symbol: global defaults, then the bot's, then the symbol's."""
        return self.symbol_risk.get(symbol, self.risk)


@dataclass(frozen=True)
class FleetConfig:
    """Everything global_config.json says, validated."""

    path: Path
    exchange: ExchangeSettings
    telegram: TelegramSettings
    tracking: TrackingSettings
    runner: RunnerSettings
    risk: RiskSettings
    bots: Mapping[str, BotSettings]
    health: HealthSettings = field(default_factory=HealthSettings)

    @classmethod
    def defaults(
        cls, bots: Mapping[str, BotSettings] | None = None, path: Path = Path("global_config.json")
    ) -> FleetConfig:
        """Every section at its default, with ``bots`` built in code (tests, benchmarks, scripts)."""
        return cls(
            path=path,
            exchange=ExchangeSettings(),
            telegram=TelegramSettings(),
            tracking=TrackingSettings(),
            runner=RunnerSettings(),
            risk=RiskSettings(),
            bots=dict(bots or {}),
        )


def _json_path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _one_line(source: Path, error: ValidationError, prefix: Sequence[int | str] = ()) -> ConfigError:
    first = error.errors(include_url=False)[0]
    where = _json_path([*prefix, *first["loc"]])
    message = first["msg"]
    if first["type"] == "missing":
        return ConfigError(f"{source}: {where}: required setting is missing")
    if first["type"] == "extra_forbidden":
        return ConfigError(f"{source}: {where}: unknown setting (check the spelling)")
    return ConfigError(f"{source}: {where} = {json.dumps(first.get('input'), default=str)}: {message}")


def load_config(path: Path, param_models: Mapping[str, type[BaseModel]]) -> FleetConfig:
    """Read and validate global_config.json; raise ``ConfigError`` with one line on any problem.

    ``param_models`` maps every registered bot name to its parameter model; a bot name not in it is
    an error, and each bot's ``params`` are validated by its own model.
    """
    try:
        raw_text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (set --config or BOTS_CONFIG)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        raw = json.loads(raw_text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: (top level) must be a JSON object")
    try:
        parsed = ConfigFile.model_validate(raw)
    except ValidationError as exc:
        raise _one_line(path, exc) from None
    try:
        risk_defaults = RiskSettings.model_validate(parsed.risk)
    except ValidationError as exc:
        raise _one_line(path, exc, ("risk",)) from None

    bots: dict[str, BotSettings] = {}
    for name, entry in parsed.bots.items():
        model = param_models.get(name)
        if model is None:
            known = ", ".join(sorted(param_models))
            raise ConfigError(f"{path}: bots.{name}: unknown bot (known: {known})")
        try:
            params = model.model_validate(entry.params)
        except ValidationError as exc:
            raise _one_line(path, exc, ("bots", name, "params")) from None
        try:
            risk = risk_defaults.merged(entry.risk)
        except ValidationError as exc:
            raise _one_line(path, exc, ("bots", name, "risk")) from None
        symbols, symbol_risk = _resolve_symbols(path, name, entry, risk, parsed.exchange.default_market)
        timeout_hours = entry.timeout_hours or parsed.tracking.timeout_hours
        bots[name] = BotSettings(
            name=name,
            enabled=entry.enabled,
            symbols=symbols,
            timeframe=entry.timeframe,
            cooldown_ms=round(entry.cooldown_minutes * 60_000),
            max_open_signals=entry.max_open_signals,
            timeout_ms=round(timeout_hours * 3_600_000),
            params=params,
            risk=risk,
            symbol_risk=symbol_risk,
            chart=entry.chart,
            tp_fractions=_fractions_tuple(
                entry.tp_fractions if entry.tp_fractions is not None else parsed.tracking.tp_fractions
            ),
            break_even_after_tp1=(
                entry.break_even_after_tp1
                if entry.break_even_after_tp1 is not None
                else parsed.tracking.break_even_after_tp1
            ),
            trailing_stop=entry.trailing_stop,
        )
    return FleetConfig(
        path=path,
        exchange=parsed.exchange,
        telegram=parsed.telegram,
        tracking=parsed.tracking,
        runner=parsed.runner,
        risk=risk_defaults,
        bots=bots,
        health=parsed.health,
    )


def _fractions_tuple(value: list[float] | None) -> tuple[float, ...] | None:
    return None if value is None else tuple(value)


def _resolve_symbols(
    path: Path, bot: str, entry: BotEntry, bot_risk: RiskSettings, default_market: str
) -> tuple[tuple[str, ...], dict[str, RiskSettings]]:
    """Unified symbols of one bot, in order, and the risk settings of those that override it."""
    symbols: list[str] = []
    symbol_risk: dict[str, RiskSettings] = {}
    for index, item in enumerate(entry.symbols):
        where = _json_path(("bots", bot, "symbols", index))
        try:
            resolved = resolve_symbol(item.symbol, item.market, default_market)
        except ValueError as exc:
            raise ConfigError(f"{path}: {where} = {json.dumps(item.symbol)}: {exc}") from None
        if entry.timeframe == "8h" and ":" not in resolved:
            raise ConfigError(
                f"{path}: {where} = {json.dumps(item.symbol)}: MEXC spot has no 8h candles "
                f'(use {{"symbol": "{item.symbol}", "market": "swap"}} or another timeframe)'
            )
        if resolved in symbols:
            raise ConfigError(f"{path}: {where} = {json.dumps(item.symbol)}: {resolved} is listed twice")
        symbols.append(resolved)
        if item.risk:
            try:
                symbol_risk[resolved] = bot_risk.merged(item.risk)
            except ValidationError as exc:
                raise _one_line(path, exc, ("bots", bot, "symbols", index, "risk")) from None
    return tuple(symbols), symbol_risk


def _per_bot(environ: Mapping[str, str], prefix: str, exclude: str = "") -> dict[str, str]:
    """``PREFIX<BOT>`` variables as {bot name in lower case: value}, empty values ignored."""
    return {
        key.removeprefix(prefix).lower(): value.strip()
        for key, value in environ.items()
        if key.startswith(prefix) and key not in (exclude, prefix) and value.strip()
    }


def _secret(environ: Mapping[str, str], name: str) -> SecretStr | None:
    value = environ.get(name, "").strip()
    return SecretStr(value) if value else None


def _plain(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


@dataclass(frozen=True)
class Settings:
    """What the environment (or .env) says: paths, secrets, chats and base-URL overrides.

    Secrets are ``SecretStr`` so that printing a Settings object never shows them.
    """

    config_path: Path
    state_dir: Path
    log_dir: Path
    telegram_token: SecretStr | None
    telegram_default_chat: str | None
    telegram_bot_chats: Mapping[str, str]
    telegram_bot_tokens: Mapping[str, SecretStr]
    telegram_bot_topics: Mapping[str, int]
    telegram_api_base_url: str | None
    mexc_api_key: SecretStr | None
    mexc_api_secret: SecretStr | None
    mexc_api_base_url: str | None

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, config_override: Path | None = None
    ) -> Settings:
        """Read the fixed variable names (see .env.example) from ``environ`` (default: os.environ)."""
        env = os.environ if environ is None else environ
        chats = _per_bot(env, "TELEGRAM_CHAT_", exclude="TELEGRAM_CHAT_ID")
        tokens = {bot: SecretStr(value) for bot, value in _per_bot(env, "TELEGRAM_BOT_TOKEN_").items()}
        topics: dict[str, int] = {}
        for bot, value in _per_bot(env, "TELEGRAM_TOPIC_").items():
            if not value.isdigit() or int(value) <= 0:
                raise ConfigError(
                    f"environment: TELEGRAM_TOPIC_{bot.upper()} = {value!r}: must be a topic id (a positive "
                    "whole number: the message_thread_id of the forum topic)"
                )
            topics[bot] = int(value)
        for name, url in (
            ("TELEGRAM_API_BASE_URL", env.get("TELEGRAM_API_BASE_URL")),
            ("MEXC_API_BASE_URL", env.get("MEXC_API_BASE_URL")),
        ):
            if url and not url.strip().startswith(("http://", "https://")):
                raise ConfigError(f"environment: {name} = {url!r}: must start with http:// or https://")
        return cls(
            config_path=config_override or Path(env.get("BOTS_CONFIG") or "global_config.json"),
            state_dir=Path(env.get("BOTS_STATE_DIR") or "state"),
            log_dir=Path(env.get("BOTS_LOG_DIR") or "logs"),
            telegram_token=_secret(env, "TELEGRAM_BOT_TOKEN"),
            telegram_default_chat=_plain(env, "TELEGRAM_CHAT_ID"),
            telegram_bot_chats=chats,
            telegram_bot_tokens=tokens,
            telegram_bot_topics=topics,
            telegram_api_base_url=_plain(env, "TELEGRAM_API_BASE_URL"),
            mexc_api_key=_secret(env, "MEXC_API_KEY"),
            mexc_api_secret=_secret(env, "MEXC_API_SECRET"),
            mexc_api_base_url=_plain(env, "MEXC_API_BASE_URL"),
        )

    def secrets(self) -> list[str]:
        """Every secret value, for the log redactor."""
        found = (
            self.telegram_token,
            self.mexc_api_key,
            self.mexc_api_secret,
            *self.telegram_bot_tokens.values(),
        )
        return [s.get_secret_value() for s in found if s is not None]

    def token_for(self, bot: str) -> SecretStr | None:
        """The token a bot posts with: ``TELEGRAM_BOT_TOKEN_<BOT>`` if set, else ``TELEGRAM_BOT_TOKEN``."""
        return self.telegram_bot_tokens.get(bot.lower(), self.telegram_token)

    def token_variable(self, bot: str) -> str:
        """The name of the variable ``token_for`` read (for error messages; never the value)."""
        return (
            f"TELEGRAM_BOT_TOKEN_{bot.upper()}"
            if bot.lower() in self.telegram_bot_tokens
            else "TELEGRAM_BOT_TOKEN"
        )

    def topic_for(self, bot: str) -> int | None:
        """The forum topic (message_thread_id) a bot posts in, from ``TELEGRAM_TOPIC_<BOT>``."""
        return self.telegram_bot_topics.get(bot.lower())

    def chat_for(self, bot: str) -> str | None:
        """The chat a bot posts to: ``TELEGRAM_CHAT_<BOT>`` if set, else ``TELEGRAM_CHAT_ID``."""
        return self.telegram_bot_chats.get(bot.lower(), self.telegram_default_chat)
