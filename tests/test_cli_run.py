"""The CLI as users run it: configuration errors, dry-run fallback, SIGTERM, and secrets kept out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bots import REGISTRY
from tests.fakes.mexc import FakeMexc
from tests.fakes.mexc import Fault as MexcFault
from tests.fakes.telegram import FakeTelegram
from tests.fakes.telegram import Fault as TelegramFault
from tests.harness import (
    CHAT,
    MEXC_KEY,
    MEXC_SECRET,
    TOKEN,
    cli_env,
    mexc_with_psar_signal,
    run_cli,
    sigterm_cli,
    start_cli,
    write_config,
)

VALID_BOT = {"symbols": ["BTC/USDT"], "timeframe": "1h"}

BROKEN_CONFIGS = {
    "unknown bot": (
        json.dumps({"bots": {"psar_bot": VALID_BOT, "moon_bot": VALID_BOT}}),
        f"bots.moon_bot: unknown bot (known: {', '.join(sorted(REGISTRY))})",
    ),
    "wrong type": (
        json.dumps({"bots": {"psar_bot": {**VALID_BOT, "max_open_signals": "many"}}}),
        'bots.psar_bot.max_open_signals = "many": '
        "Input should be a valid integer, unable to parse string as an integer",
    ),
    "negative cooldown": (
        json.dumps({"bots": {"psar_bot": {**VALID_BOT, "cooldown_minutes": -5}}}),
        "bots.psar_bot.cooldown_minutes = -5: Input should be greater than or equal to 0",
    ),
    "missing symbols": (
        json.dumps({"bots": {"psar_bot": {"timeframe": "1h"}}}),
        "bots.psar_bot.symbols: required setting is missing",
    ),
    "trailing without a line": (
        json.dumps({"bots": {"strat_bot": {"symbols": ["BTC/USDT"], "trailing_stop": True}}}),
        "bots.strat_bot.trailing_stop: this strategy has no stop line to trail (psar_bot and most_bot have)",
    ),
    "invalid JSON": (
        '{"bots": {"psar_bot": {"symbols": ["BTC/USDT"],}}}',
        "invalid JSON at line 1 column 48: Expecting property name enclosed in double quotes",
    ),
}


@pytest.mark.integration
@pytest.mark.parametrize("case", sorted(BROKEN_CONFIGS))
async def test_check_config_names_the_json_path_and_exits_2(case: str, tmp_path: Path) -> None:
    """Each broken global_config.json gives one line naming the JSON path, exit status 2, no traceback."""
    text, expected = BROKEN_CONFIGS[case]
    config = tmp_path / "global_config.json"
    config.write_text(text, encoding="utf-8")

    run = await run_cli(["check-config"], cli_env(tmp_path, "http://127.0.0.1:9", None), tmp_path)

    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr == f"config error: {config}: {expected}\n"


@pytest.mark.integration
async def test_check_config_accepts_the_shipped_configuration(tmp_path: Path) -> None:
    """The repository's own global_config.json is valid."""
    repo_config = Path(__file__).resolve().parents[1] / "global_config.json"
    env = cli_env(tmp_path, "http://127.0.0.1:9", None, BOTS_CONFIG=str(repo_config))

    run = await run_cli(["check-config"], env, tmp_path)

    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"{repo_config}: OK (")


@pytest.fixture
async def mexc() -> AsyncIterator[FakeMexc]:
    """The fake exchange serving BTC/USDT 4h history whose newest closed candle carries a psar signal."""
    async with mexc_with_psar_signal() as fake:
        yield fake


@pytest.mark.integration
async def test_missing_token_falls_back_to_dry_run(mexc: FakeMexc, tmp_path: Path) -> None:
    """Without TELEGRAM_BOT_TOKEN, `run` warns, prints the alert on the console and exits 0."""
    write_config(tmp_path)

    run = await run_cli(["run", "psar_bot", "--once"], cli_env(tmp_path, mexc.base_url, None), tmp_path)

    assert run.returncode == 0, run.stderr
    assert "TELEGRAM_BOT_TOKEN is not set: running in dry-run" in run.stderr
    assert "psar_bot · alert (dry-run)" in run.stdout
    assert "Entry: " in run.stdout


@pytest.mark.integration
async def test_a_bad_symbol_is_one_line_with_suggestions_and_the_good_one_runs(
    mexc: FakeMexc, tmp_path: Path
) -> None:
    """BTC/USDTT is reported once at start with the nearest names; BTC/USDT is still fetched and alerted."""
    write_config(tmp_path, {"symbols": ["BTC/USDTT", "BTC/USDT"]})

    run = await run_cli(["run", "psar_bot", "--once"], cli_env(tmp_path, mexc.base_url, None), tmp_path)

    assert run.returncode == 0, run.stderr
    problem = "[error    ] symbol BTC/USDTT is not listed on MEXC; did you mean BTC/USDT?"
    naming = [line for line in run.stderr.splitlines() if "BTC/USDTT" in line]
    assert len(naming) == 2
    assert problem in naming[0]
    assert "[warning  ] bot psar_bot: runs without BTC/USDTT (see above)" in naming[1]
    assert "Traceback" not in run.stderr
    assert [r.query["symbol"] for r in mexc.requests if r.path == "/api/v3/klines"] == ["BTCUSDT"]
    assert "psar_bot · alert (dry-run)" in run.stdout


def _events(tmp_path: Path) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    for path in sorted((tmp_path / "logs" / "events").glob("events-*.jsonl")):
        events.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return events


@pytest.mark.integration
@pytest.mark.slow
async def test_sigterm_stops_the_loop_cleanly(mexc: FakeMexc, tmp_path: Path) -> None:
    """SIGTERM during a looping run ends it with status 0 within 30 s, after SHUTDOWN_INITIATED/COMPLETE."""
    write_config(tmp_path)
    async with FakeTelegram(tokens=[TOKEN], chats=[int(CHAT)]) as telegram:
        process = await start_cli(
            ["run", "psar_bot"], cli_env(tmp_path, mexc.base_url, telegram.url), tmp_path
        )
        async with asyncio.timeout(30):
            while not any(e["event"] == "STATUS" for e in _events(tmp_path)):
                await asyncio.sleep(0.2)
        console, elapsed = await sigterm_cli(process)

    assert process.returncode == 0, console
    assert elapsed < 30
    names = [e["event"] for e in _events(tmp_path)]
    assert names.index("SHUTDOWN_INITIATED") < names.index("SHUTDOWN_COMPLETE")
    assert [e["reason"] for e in _events(tmp_path) if e["event"] == "SHUTDOWN_INITIATED"] == ["SIGTERM"]
    assert console.index("SHUTDOWN_INITIATED") < console.index("SHUTDOWN_COMPLETE")
    assert len(telegram.messages()) == 1


def _leaks(blob: bytes) -> list[str]:
    secret_parts = [TOKEN, TOKEN.split(":", 1)[1], MEXC_KEY, MEXC_SECRET]
    return [part for part in secret_parts if part.encode() in blob]


@pytest.mark.integration
@pytest.mark.slow
async def test_secrets_never_reach_logs_state_or_output(mexc: FakeMexc, tmp_path: Path) -> None:
    """With DEBUG logs, exchange and Telegram errors and a rejected token, no secret is written anywhere."""
    write_config(tmp_path)
    mexc.inject(MexcFault.http_500(), path_contains="klines")
    outputs: list[bytes] = []
    async with FakeTelegram(tokens=[TOKEN], chats=[int(CHAT)]) as telegram:
        # The alert carries its chart: it goes out with sendPhoto, the card as the caption.
        telegram.inject(TelegramFault.server_error(), method="sendPhoto")
        telegram.inject(TelegramFault.retry_after(1), method="sendPhoto")
        env = cli_env(tmp_path, mexc.base_url, telegram.url)
        run = await run_cli(["run", "psar_bot", "--once", "--log-level", "DEBUG"], env, tmp_path)
        outputs += [run.stdout.encode(), run.stderr.encode()]
        assert run.returncode == 0, run.stderr
        assert len(telegram.messages()) == 1
        assert len(telegram.rejected) == 2
    async with FakeTelegram(
        tokens=["111111111:AAanotherTokenThatIsNotOursAtAll000"], chats=[int(CHAT)]
    ) as other:
        rejected = await run_cli(
            ["run", "psar_bot", "--once", "--log-level", "DEBUG"],
            cli_env(tmp_path, mexc.base_url, other.url),
            tmp_path,
        )
        outputs += [rejected.stdout.encode(), rejected.stderr.encode()]
        assert rejected.returncode == 1
        assert "Telegram rejected TELEGRAM_BOT_TOKEN" in rejected.stderr

    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "global_config.json"]
    assert any(p.suffix == ".log" for p in written)
    assert any(p.name == "signals.sqlite3" for p in written)
    for path in written:
        assert _leaks(path.read_bytes()) == [], path
    for blob in outputs:
        assert _leaks(blob) == []
    assert any(b"500" in blob or b"retry" in blob.lower() for blob in outputs)
