"""The fleet in operation: health and metrics of `run --all`, a failing bot, SIGTERM under load."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import logging
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from bots.base import DataNeeds, MarketData, StrategyParams
from bots.psar_bot import PsarBot, PsarParams
from common.clock import SimulatedClock
from common.config import FleetConfig
from common.events import EventLog, read_events
from common.health import RunState
from common.logging_config import configure_logging
from common.market.replay import ReplaySource, aggregate, read_ohlcv_file
from common.metrics import FleetMetrics
from common.notifier import ConsoleNotifier
from common.observe import Observers
from common.runner import Runner
from common.store import Store
from common.types import Candles, Setup
from tests.fakes.csvdata import OhlcvArrays, load_funding_csv
from tests.fakes.mexc import FakeMexc, Fault, shift_to_now
from tests.fakes.telegram import FakeTelegram
from tests.fakes.telegram import Fault as TelegramFault
from tests.harness import (
    H4_MS,
    REPO,
    SAMPLE,
    TOKEN,
    avoid_candle_boundary,
    bot_runtime,
    cli_env,
    free_port,
    metric_samples,
    run_cli,
    sample_4h,
    serve_until,
    sigterm_cli,
    start_cli,
    write_config,
)
from tests.test_e2e_psar import _first_signal_bar, _window, bot_scan_last
from tests.test_outbox_crash import _outbox_rows, _queue_alerts

#: A private chat: only the per-chat spacing paces the alerts (no per-minute group limit).
CHAT_ID = 777000222
H8_MS = 8 * 3_600_000
WEEK_MS = 7 * 24 * 3_600_000


def _events(tmp_path: Path, name: str) -> list[dict[str, object]]:
    return [e for e in read_events(tmp_path / "logs" / "events") if e.get("event") == name]


def _endpoint(path: str) -> str:
    """The fake's recorded path with the contract symbol as the metric label spells it."""
    return "/".join("{symbol}" if part == "BTC_USDT" else part for part in path.split("/"))


# -- acceptance 1: run --all, /health/ready and /metrics --------------------------------------------


def _add_spot(fake: FakeMexc, candles: Candles, period_ms: int) -> None:
    """Serve ``candles`` as BTCUSDT spot, shifted so that the last one is forming now."""
    ts = shift_to_now(candles.ts, period_ms, int(time.time() * 1000))
    c = candles
    fake.add_candles("BTCUSDT", "spot", c.timeframe, ts, c.open, c.high, c.low, c.close, c.volume)


@dataclass
class FleetFakes:
    """The fakes every bot of the shipped configuration can run against, and the psar bar served."""

    mexc: FakeMexc
    telegram: FakeTelegram
    newest_close_ms: int  # close of the newest closed 4h candle served


@pytest.fixture
async def fleet_fakes() -> AsyncIterator[FleetFakes]:
    """BTC spot (4h ending on a psar signal, 1d, 1w) and BTC swap (4h, funding) for all fifteen bots."""
    avoid_candle_boundary(H4_MS, margin_s=90)
    data = sample_4h()
    last = _first_signal_bar(data, 1020)  # harmonic_bot and diy_bot read 1000 candles
    daily = read_ohlcv_file(SAMPLE / "BTC_USDT-1d.csv.gz", "BTC/USDT", "1d")
    funding = load_funding_csv(SAMPLE / "BTC_USDT-funding_rate.csv.gz")
    async with FakeMexc() as mexc, FakeTelegram(tokens=[TOKEN], chats=[CHAT_ID]) as telegram:
        mexc.add_spot("BTCUSDT", "BTC", "USDT", price_tick="0.01")
        mexc.add_swap("BTC_USDT", "BTC", "USDT", price_unit=0.1, contract_size=0.0001)
        served = serve_until(mexc, data, last)
        end = last + 2
        swap = OhlcvArrays(
            served, data.open[:end], data.high[:end], data.low[:end], data.close[:end], data.volume[:end]
        )
        mexc.add_candles(
            "BTC_USDT", "swap", "4h", swap.ts, swap.open, swap.high, swap.low, swap.close, swap.volume
        )
        _add_spot(mexc, daily, 24 * 3_600_000)
        _add_spot(mexc, aggregate(daily, "1w"), WEEK_MS)
        mexc.add_funding("BTC_USDT", shift_to_now(funding.ts, H8_MS, int(time.time() * 1000)), funding.rate)
        yield FleetFakes(mexc, telegram, int(served[-1]))


def _fleet_config(tmp_path: Path, **sections: Any) -> None:
    """The shipped global_config.json on BTC only, every bot on 4h without charts, fast delivery."""
    config = json.loads((REPO / "global_config.json").read_text(encoding="utf-8"))
    for bot in config["bots"].values():
        swap = ":" in str(bot["symbols"][0])
        bot.update(symbols=["BTC/USDT:USDT" if swap else "BTC/USDT"], timeframe="4h", chart=False)
    config["bots"]["orb_bot"]["params"]["stages"] = [240]
    config["bots"]["mtf_bot"]["params"]["higher_lookback"] = 60
    config["bots"]["psar_bot"].update(
        params={"lookback": 300},
        risk={"sl_method": "structure", "tp_method": "atr", "tp_multiples": [3.0, 5.0], "min_rr": 1.5},
        cooldown_minutes=240,
    )
    config["exchange"].update(candle_close_delay_s=0, timeout_ms=5000, requests_per_second=20)
    config["telegram"].update(per_chat_interval_s=0.05)
    config.update(sections)
    (tmp_path / "global_config.json").write_text(json.dumps(config), encoding="utf-8")


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as answer:
        return answer.status, json.loads(await answer.text())


async def _poll(http: aiohttp.ClientSession, url: str, status: int, timeout: float = 60) -> dict[str, Any]:
    """GET ``url`` until it answers ``status`` (the server may not be listening yet); its body."""
    got, body = 0, dict[str, Any]()
    try:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    got, body = await _get(http, url)
                except aiohttp.ClientConnectionError:
                    got, body = 0, {}
                if got == status:
                    return body
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"{url} did not answer {status} within {timeout:g} s: {got} {body}") from None


@pytest.mark.integration
async def test_the_fleet_serves_readiness_and_metrics_that_match_the_fakes(
    fleet_fakes: FleetFakes, tmp_path: Path
) -> None:
    """run --all with every bot: ready after the first cycle, 503 while MEXC is down, 200 again after;
    /metrics counts exactly the requests the fake MEXC recorded and the messages Telegram received."""
    mexc, telegram = fleet_fakes.mexc, fleet_fakes.telegram
    _fleet_config(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = cli_env(tmp_path, mexc.base_url, telegram.url, TELEGRAM_CHAT_ID=str(CHAT_ID))
    process = await start_cli(["run", "--all", "--health-port", str(port)], env, tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            ready = await _poll(http, f"{base}/health/ready", 200)
            async with asyncio.timeout(30):  # every alert of the first cycle delivered
                while not (_events(tmp_path, "SIGNAL_EMITTED") and _pending(await _metrics(http, base)) == 0):
                    await asyncio.sleep(0.1)
            before_scrape = int(time.time() * 1000)
            samples = metric_samples(await _metrics(http, base))
            after_scrape = int(time.time() * 1000)
            recorded = Counter(_endpoint(r.path) for r in mexc.requests)
            messages = len(telegram.messages())

            mexc.fail_all(Fault.http_500())
            down = await _poll(http, f"{base}/health/ready", 503)
            live_while_down, _ = await _get(http, f"{base}/health/live")
            mexc.recover()
            await _poll(http, f"{base}/health/ready", 200, timeout=15)
            health_status, health = await _get(http, f"{base}/health")
            later = metric_samples(await _metrics(http, base))
            recorded_later = Counter(_endpoint(r.path) for r in mexc.requests)
            refused = Counter(_endpoint(r.path) for r in mexc.requests if r.fault == "http_500")
        stderr, _ = await sigterm_cli(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert process.returncode == 0, stderr
    names = sorted(json.loads((REPO / "global_config.json").read_text())["bots"])
    assert (ready["status"], ready["live"], ready["ready"], ready["problems"]) == ("ok", True, True, [])
    assert sorted(ready["bots"]) == names
    # Requests: per endpoint exactly what the fake received, none failed.
    assert {
        key[0][1]: value for key, value in samples["signal_fleet_exchange_requests_total"].items()
    } == dict(recorded)
    assert "signal_fleet_exchange_errors_total" not in samples
    assert samples["signal_fleet_cycles_total"] == {(): 1.0}
    # Alerts: every message Telegram received was counted, by bot, and each is an open signal.
    emitted = Counter(str(e["bot"]) for e in _events(tmp_path, "SIGNAL_EMITTED"))
    sent = {dict(key)["bot"]: value for key, value in samples["signal_fleet_alerts_sent_total"].items()}
    assert emitted["psar_bot"] == 1
    assert sent == dict(emitted)
    assert sum(sent.values()) == messages
    assert {k: v for k, v in _by(samples, "signal_fleet_open_signals", "bot").items() if v} == dict(emitted)
    assert sorted(_by(samples, "signal_fleet_open_signals", "bot")) == names
    assert _by(samples, "signal_fleet_circuit_breaker_state", "breaker") == {
        "mexc-markets": 0.0,
        "mexc-spot": 0.0,
        "mexc-swap": 0.0,
    }
    ages = samples["signal_fleet_last_candle_age_seconds"]
    spot_4h = ages[(("symbol", "BTC/USDT"), ("timeframe", "4h"))]
    assert before_scrape <= fleet_fakes.newest_close_ms + spot_4h * 1000 <= after_scrape
    assert sorted(ages) == [
        (("symbol", "BTC/USDT"), ("timeframe", timeframe)) for timeframe in ("1d", "1w", "4h")
    ] + [(("symbol", "BTC/USDT:USDT"), ("timeframe", "4h"))]
    assert ages[(("symbol", "BTC/USDT:USDT"), ("timeframe", "4h"))] == spot_4h
    # While MEXC answered 500: not ready, one line saying why; still alive (the loop waits for a close).
    assert down["ready"] is False
    assert down["live"] is True
    assert [p for p in down["problems"] if not p.startswith("exchange unreachable: fetch_time: ")] == []
    assert "ExchangeNotAvailable" in down["problems"][0]
    assert live_while_down == 200
    assert health_status == 200
    assert health["bots"]["psar_bot"]["open_signals"] == 1
    assert health["bots"]["psar_bot"]["candle_age_s"] == pytest.approx(spot_4h, abs=120)
    # The probes are requests too: counted per endpoint, the refused ones as errors.
    assert {key[0][1]: value for key, value in later["signal_fleet_exchange_requests_total"].items()} == dict(
        recorded_later
    )
    assert {
        dict(key)["endpoint"]: value for key, value in later["signal_fleet_exchange_errors_total"].items()
    } == dict(refused)


async def _metrics(http: aiohttp.ClientSession, base: str) -> str:
    async with http.get(f"{base}/metrics") as answer:
        assert answer.status == 200
        return await answer.text()


def _pending(text: str) -> float:
    return metric_samples(text).get("signal_fleet_alerts_pending", {}).get((), -1.0)


def _by(
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, label: str, **only: str
) -> dict[str, float]:
    """The samples of ``name`` keyed by ``label``, keeping those whose other labels match ``only``."""
    return {
        dict(key)[label]: value
        for key, value in samples.get(name, {}).items()
        if all(dict(key).get(k) == v for k, v in only.items())
    }


# -- acceptance 2: one bot raising in its scan ----------------------------------------------------


class NoParams(StrategyParams):
    """No parameters."""


@dataclass
class ExplodingBot:
    """A strategy registered only here: every scan records the bar it was shown, then raises."""

    name: str = "exploding_bot"
    params_model: type[NoParams] = NoParams
    scanned: list[int] = field(default_factory=list)

    def needs(self, params: NoParams, timeframe: str) -> DataNeeds:
        """50 candles."""
        return DataNeeds(lookback=50)

    def scan(self, data: MarketData, params: NoParams) -> Sequence[Setup]:
        """Raise, naming the bar."""
        close = data.candles.close_time(-1)
        self.scanned.append(close)
        raise RuntimeError(f"boom at {close}")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Leave the root logger and structlog as the test found them (the test configures logging)."""
    root = logging.getLogger()
    saved_handlers, saved_level, saved_structlog = list(root.handlers), root.level, structlog.get_config()
    yield
    for handler in [h for h in root.handlers if h not in saved_handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(saved_level)
    structlog.configure(**saved_structlog)


async def _replay(tmp_path: Path, bots: list[Any], metrics: FleetMetrics) -> tuple[Runner, str]:
    """Replay the bundled BTC 4h history from 2024-07-01 with ``bots``; the runner and its console."""
    clock = SimulatedClock(0)
    console = io.StringIO()
    store = Store(tmp_path / "state")
    observer = Observers(metrics, RunState(60.0))
    runner = Runner(
        bots=bots,
        source=ReplaySource(SAMPLE, clock),
        store=store,
        notifier=ConsoleNotifier(store, clock, console, observer=observer),
        clock=clock,
        events=EventLog(tmp_path / "events", clock),
        config=FleetConfig.defaults(),
        stop=asyncio.Event(),
        replay_from_ms=1_719_792_000_000,  # 2024-07-01: about 400 cycles
        observer=observer,
    )
    assert await runner.prepare() == []
    await runner.run()
    return runner, console.getvalue()


@pytest.mark.integration
async def test_a_bot_raising_in_its_scan_never_stops_the_others(
    tmp_path: Path, restore_logging: None
) -> None:
    """exploding_bot raises on every bar: it is scanned again every cycle, each failure is logged with its
    traceback and counted, and psar_bot sends exactly the alerts it sends when running alone."""
    configure_logging(log_dir=tmp_path / "logs", process_name="fleet", console_stream=io.StringIO())
    exploding = ExplodingBot()
    psar = bot_runtime(PsarBot(), "4h", ["BTC/USDT"], PsarParams())
    metrics = FleetMetrics()
    together, console = await _replay(
        tmp_path / "together", [bot_runtime(exploding, "4h", ["BTC/USDT"], NoParams()), psar], metrics
    )
    alone, alone_console = await _replay(tmp_path / "alone", [psar], FleetMetrics())

    alerts = [s.signal.id for s in together._store.all_signals()]
    assert len(alerts) >= 3
    assert alerts == [s.signal.id for s in alone._store.all_signals()]
    assert console == alone_console
    assert console.count("psar_bot · alert (dry-run)") == len(alerts)
    # Scanned at every cycle, one 4h bar after the other: the failure never dropped the bot.
    assert len(exploding.scanned) == together.cycles > 100
    assert [b - a for a, b in itertools.pairwise(exploding.scanned)] == [H4_MS] * (together.cycles - 1)
    samples = metric_samples(metrics.exposition().decode())
    assert samples["signal_fleet_strategy_errors_total"] == {
        (("bot", "exploding_bot"),): float(together.cycles)
    }
    assert _by(samples, "signal_fleet_alerts_sent_total", "bot", kind="signal") == {
        "psar_bot": float(len(alerts))
    }
    logged = [
        json.loads(line)
        for line in (tmp_path / "logs" / "fleet.log").read_text().splitlines()
        if "strategy raised" in line
    ]
    assert len(logged) == together.cycles
    for entry, close in zip(logged, exploding.scanned, strict=True):
        assert (entry["level"], entry["bot"], entry["symbol"]) == ("error", "exploding_bot", "BTC/USDT")
        assert entry["exception"].startswith("Traceback (most recent call last):")
        assert entry["exception"].endswith(f"RuntimeError: boom at {close}")


# -- acceptance 3: SIGTERM under load ---------------------------------------------------------------


@pytest.mark.integration
async def test_sigterm_under_load_exits_0_in_time_and_loses_no_alert(tmp_path: Path) -> None:
    """SIGTERM with a cycle hanging on MEXC, 50 alerts queued and Telegram slowed: exit 0 within the
    6 s limit, SHUTDOWN_COMPLETE with the exact backlog, and a restart sends the rest, none twice."""
    avoid_candle_boundary(H4_MS, margin_s=60)
    state_dir = tmp_path / "state"
    texts = _queue_alerts(state_dir, 1, 50)
    async with FakeMexc() as mexc, FakeTelegram(tokens=[TOKEN], chats=[CHAT_ID]) as telegram:
        mexc.add_spot("BTCUSDT", "BTC", "USDT", price_tick="0.01")
        data = sample_4h()
        last = len(data.ts) - 2
        while bot_scan_last(_window(data, last)):  # the newest closed candle carries no setup
            last -= 1
        serve_until(mexc, data, last)
        mexc.inject(Fault.hang(20), times=10, path_contains="klines")  # the cycle stays in flight
        telegram.inject(TelegramFault.hang(0.3), times=10, method="sendMessage")  # a slow Telegram
        write_config(
            tmp_path,
            {"chart": False},
            telegram={"per_chat_interval_s": 0.05},
            runner={"shutdown_timeout_s": 6},
            exchange={"candle_close_delay_s": 0, "timeout_ms": 10_000},
        )
        env = cli_env(tmp_path, mexc.base_url, telegram.url, TELEGRAM_CHAT_ID=str(CHAT_ID))
        process = await start_cli(["run", "psar_bot"], env, tmp_path)
        try:
            async with asyncio.timeout(30):
                while not mexc.count("/api/v3/klines"):
                    await asyncio.sleep(0.02)
            stderr, elapsed = await sigterm_cli(process, timeout=20)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        in_flight = [r for r in mexc.requests if r.path == "/api/v3/klines"]
        sent_first = len(telegram.messages(CHAT_ID))
        rows = _outbox_rows(state_dir)
        done = _events(tmp_path, "SHUTDOWN_COMPLETE")

        mexc.recover()
        write_config(tmp_path, {"chart": False}, telegram={"per_chat_interval_s": 0})
        restart = await run_cli(["run", "psar_bot", "--once"], env, tmp_path)
        delivered = [m.text or "" for m in telegram.messages(CHAT_ID)]

    assert process.returncode == 0, stderr
    assert elapsed < 6.0
    assert all(r.fault == "hang" for r in in_flight)  # the cycle never got its candles
    assert "cycle in flight cancelled to respect the shutdown limit" in stderr
    assert 0 < sent_first < 50
    assert [e["pending_messages"] for e in done] == [50 - sent_first]
    assert sum(row["status"] == "sent" for row in rows) == sent_first
    assert sum(row["status"] == "pending" for row in rows) == 50 - sent_first
    assert restart.returncode == 0, restart.stderr
    assert sorted(delivered) == sorted(texts)  # every alert exactly once over the two runs
    assert [row["status"] for row in _outbox_rows(state_dir)] == ["sent"] * 50
    assert [e["pending_messages"] for e in _events(tmp_path, "SHUTDOWN_COMPLETE")] == [50 - sent_first, 0]


@pytest.mark.integration
async def test_a_second_sigterm_exits_at_once_with_status_1(tmp_path: Path) -> None:
    """While the first SIGTERM waits for a hanging cycle (up to 15 s), a second one ends the process now."""
    avoid_candle_boundary(H4_MS, margin_s=60)
    async with FakeMexc() as mexc:
        mexc.add_spot("BTCUSDT", "BTC", "USDT", price_tick="0.01")
        serve_until(mexc, sample_4h(), 400)
        mexc.inject(Fault.hang(30), times=3, path_contains="klines")
        write_config(tmp_path, {"chart": False}, exchange={"candle_close_delay_s": 0, "timeout_ms": 60_000})
        process = await start_cli(["run", "psar_bot"], cli_env(tmp_path, mexc.base_url, None), tmp_path)
        try:
            async with asyncio.timeout(30):
                while not mexc.count("/api/v3/klines"):
                    await asyncio.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):  # the first signal is handled (its event is written)
                while not _events(tmp_path, "SHUTDOWN_INITIATED"):
                    await asyncio.sleep(0.02)
            stderr, elapsed = await sigterm_cli(process, timeout=10)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    assert process.returncode == 1
    assert elapsed < 2.0
    assert "second signal: exiting at once" in stderr
    assert _events(tmp_path, "SHUTDOWN_COMPLETE") == []
