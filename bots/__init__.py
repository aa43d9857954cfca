"""Strategy bots and the CLI (``python -m bots``).

``REGISTRY`` is the explicit list of every bot: one name per bot everywhere (module
``bots/<name>.py``, config key, systemd instance, log field). A meta-test checks that every module
in this package is registered and has an entry in global_config.json.
"""

from __future__ import annotations

from typing import Any

from bots.base import Strategy
from bots.candlestick_bot import CandlestickBot
from bots.consensus_bot import ConsensusBot
from bots.diy_bot import DiyBot
from bots.fib_reversal_bot import FibReversalBot
from bots.fib_swing_bot import FibSwingBot
from bots.funding_bot import FundingBot
from bots.harmonic_bot import HarmonicBot
from bots.liquidation_bot import LiquidationBot
from bots.most_bot import MostBot
from bots.mtf_bot import MtfBot
from bots.orb_bot import OrbBot
from bots.psar_bot import PsarBot
from bots.strat_bot import StratBot
from bots.volume_bot import VolumeBot
from bots.volume_profile_bot import VolumeProfileBot

REGISTRY: dict[str, Strategy[Any]] = {
    bot.name: bot
    for bot in (
        PsarBot(),
        MostBot(),
        CandlestickBot(),
        MtfBot(),
        VolumeProfileBot(),
        OrbBot(),
        VolumeBot(),
        StratBot(),
        FibSwingBot(),
        FibReversalBot(),
        HarmonicBot(),
        FundingBot(),
        LiquidationBot(),
        DiyBot(),
        ConsensusBot(),
    )
}
