"""A local exchange emulator speaking the Binance spot / Bybit v5 spot REST subset ccxt uses.

Stdlib only (no Django), so it can run inside a test process (``start_emulator``) or as its own
process (``python -m emulator --venue binance --port 18001``). Tests and benchmarks drive it
through the unauthenticated ``/__control/`` endpoints, most conveniently via ``EmulatorControl``.
"""

from emulator.control import EmulatorControl
from emulator.server import EmulatorHandle, start_emulator

__all__ = ["EmulatorControl", "EmulatorHandle", "start_emulator"]
