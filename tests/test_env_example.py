""".env.example documents every environment variable the code reads, and sets none of them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The modules that read the environment (Settings.from_env and the console colour switch).
READERS = ("common/config.py", "common/logging_config.py")
_ENV_NAMES = {"env", "environ"}


def _is_environment(node: ast.expr) -> bool:
    """``env``, ``environ`` or ``os.environ``."""
    if isinstance(node, ast.Name):
        return node.id in _ENV_NAMES
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def variables_read(source: str) -> set[str]:
    """Names looked up in the environment: ``env.get("X")``, ``helper(env, "X")`` (a trailing ``_`` is
    a per-bot prefix) and ``"X" in os.environ``; other strings (a default "") are not names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            receiver = node.func.value if isinstance(node.func, ast.Attribute) else None
            by_method = receiver is not None and _is_environment(receiver)
            if by_method or any(_is_environment(arg) for arg in node.args):
                found.update(
                    arg.value
                    for arg in node.args
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                )
        elif (
            isinstance(node, ast.Compare)
            and any(_is_environment(c) for c in node.comparators)
            and isinstance(node.left, ast.Constant)
            and isinstance(node.left.value, str)
        ):
            found.add(node.left.value)
    return {name for name in found if re.fullmatch(r"[A-Z][A-Z0-9_]*", name)}


def documented() -> set[str]:
    """Variable names of the commented ``# NAME=value`` lines of .env.example."""
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    return set(re.findall(r"^# ([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


@pytest.mark.unit
def test_every_variable_the_code_reads_has_a_commented_example() -> None:
    """Each name read (a per-bot prefix with an example such as TELEGRAM_CHAT_PSAR_BOT) is in .env.example."""
    read = set().union(*(variables_read((REPO / module).read_text()) for module in READERS))
    names = documented()
    missing = {
        name
        for name in read
        if not (any(n.startswith(name) for n in names) if name.endswith("_") else name in names)
    }
    assert missing == set()
    assert {"TELEGRAM_CHAT_", "TELEGRAM_BOT_TOKEN_", "TELEGRAM_TOPIC_", "BOTS_STATE_DIR", "NO_COLOR"} <= read


@pytest.mark.unit
def test_the_example_sets_nothing() -> None:
    """Every line is a comment or blank: a copy of the file as it is changes nothing."""
    lines = (REPO / ".env.example").read_text(encoding="utf-8").splitlines()
    assert [line for line in lines if line.strip() and not line.startswith("#")] == []
