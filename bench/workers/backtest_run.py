"""One backtest in a fresh process, for the cold-start figure of ``bench/b_backtest.py``.

``python -m bench.workers.backtest_run DATA.npz START_MS END_MS`` prints one JSON line: the
seconds to import the engine, to run it the first time on these candles, and the peak RSS."""

from __future__ import annotations

import json
import resource
import sys
import time

T_START = time.perf_counter()


def main() -> None:
    import django

    django.setup()
    import numpy as np

    from backtest.engine import run_backtest
    from bench.b_backtest import load_series, spec_for

    imported = time.perf_counter()
    path, start_ms, end_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    series = load_series(path)
    loaded = time.perf_counter()
    result = run_backtest(spec_for(tuple(series), start_ms, end_ms), series)
    done = time.perf_counter()
    print(json.dumps({
        "import_s": round(imported - T_START, 3), "load_s": round(loaded - imported, 3),
        "first_run_s": round(done - loaded, 3), "total_s": round(done - T_START, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "candles": result.candles_processed, "trades": len(result.trades),
        "final_equity": float(np.asarray(result.equity)[-1]),
    }))


if __name__ == "__main__":
    main()
