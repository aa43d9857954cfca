"""Meta-tests: every strategy module is registered, configured, tested, and its configured params validate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bots import REGISTRY

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
NOT_STRATEGIES = {"base", "cli", "cli_tools", "cli_arguments", "__init__", "__main__"}


def strategy_modules() -> list[str]:
    """Names of the strategy modules in bots/ (every .py file except the framework ones)."""
    return sorted(p.stem for p in (ROOT / "bots").glob("*.py") if p.stem not in NOT_STRATEGIES)


def global_bots() -> dict[str, dict[str, object]]:
    """The ``bots`` section of the repository's global_config.json."""
    content = json.loads((ROOT / "global_config.json").read_text(encoding="utf-8"))
    bots: dict[str, dict[str, object]] = content["bots"]
    return bots


def test_there_is_at_least_one_strategy_module() -> None:
    """The glob finds the strategy modules (psar_bot at least), so the checks below are not vacuous."""
    assert "psar_bot" in strategy_modules()


def test_every_module_is_registered_under_its_module_name() -> None:
    """The registry holds exactly the strategy modules, each under its module's name, from that module."""
    assert sorted(REGISTRY) == strategy_modules()
    for name, strategy in REGISTRY.items():
        assert strategy.name == name
        assert type(strategy).__module__ == f"bots.{name}"


@pytest.mark.parametrize("name", strategy_modules())
def test_every_module_is_in_global_config(name: str) -> None:
    """Each strategy module has an entry in global_config.json."""
    assert name in global_bots()


def test_global_config_names_only_registered_bots() -> None:
    """global_config.json has no entry for a bot that does not exist."""
    assert sorted(global_bots()) == sorted(REGISTRY)


@pytest.mark.parametrize("name", strategy_modules())
def test_every_module_has_its_test_file(name: str) -> None:
    """Each strategy module has tests/bots/test_<name>.py."""
    assert (ROOT / "tests" / "bots" / f"test_{name}.py").is_file()


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_configured_params_validate_with_the_strategy_model(name: str) -> None:
    """Each bot's params in global_config.json are accepted by its own params_model, value for value."""
    params = global_bots()[name].get("params", {})
    assert isinstance(params, dict)
    model = REGISTRY[name].params_model
    parsed = model.model_validate(params)
    dumped = parsed.model_dump(mode="json")  # tuples as JSON lists, as in the file
    for key, value in params.items():
        assert dumped[key] == value, key
    # needs() works with the configured params and timeframe and asks for a positive history.
    timeframe = str(global_bots()[name].get("timeframe", "1h"))
    assert REGISTRY[name].needs(parsed, timeframe).lookback > 0


def test_every_registered_bot_appears_in_the_list_command() -> None:
    """`python -m bots list` (the real CLI, the shipped config) prints one enabled line per registered bot."""
    run = subprocess.run(
        [sys.executable, "-m", "bots", "list"],
        cwd=ROOT,
        env={**os.environ, "BOTS_CONFIG": str(ROOT / "global_config.json")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    listed = {line.split()[0]: line.split()[1] for line in run.stdout.splitlines() if line.strip()}
    assert listed == dict.fromkeys(REGISTRY, "enabled")
