"""Strategy bots and the CLI (``python -m bots``).

``REGISTRY`` is the explicit list of every bot: one name per bot everywhere (module
``bots/<name>.py``, config key, systemd instance, log field). A meta-test checks that every module
in this package is registered and has an entry in global_config.json.
"""

from __future__ import annotations

from typing import Any

from bots.base import Strategy
from bots.psar_bot import PsarBot

REGISTRY: dict[str, Strategy[Any]] = {bot.name: bot for bot in (PsarBot(),)}
