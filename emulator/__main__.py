"""``python -m emulator --venue binance --port 18001``: run one venue until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from emulator.core import DEFAULT_SYMBOLS
from emulator.server import DEFAULT_API_KEY, DEFAULT_API_SECRET, make_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    parser.add_argument("--venue", choices=["binance", "bybit"], required=True)
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port (printed at start)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--api-secret", default=DEFAULT_API_SECRET)
    parser.add_argument("--symbols", default=",".join(DEFAULT_SYMBOLS),
                        help="comma-separated unified symbols, e.g. BTC/USDT,ETH/USDT")
    parser.add_argument("--fee-rate", default=None, help="taker/maker fee rate, default 0.001")
    parser.add_argument("--no-rate-limits", action="store_true",
                        help="switch the venue's request/order budgets off (benchmarks)")
    args = parser.parse_args(argv)

    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    server = make_server(args.venue, host=args.host, port=args.port, api_key=args.api_key,
                         api_secret=args.api_secret, symbols=symbols, fee_rate=args.fee_rate,
                         rate_limits=not args.no_rate_limits)

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    host, port = server.server_address[:2]
    print(f"emulator {args.venue} listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
