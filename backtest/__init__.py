"""Backtests on the live strategy code: the same engines, gates, sizing and stops as a tick.

Modules (see each docstring):

* ``types``   - the records every part shares: ``BacktestSpec`` in, ``BacktestResult`` out.
* ``engine``  - ``run_backtest(spec, market)``: the simulation (fill model in its docstring).
* ``data``    - candles from PostgreSQL, an OHLCV CSV file or the synthetic generator, checked.
* ``report``  - metrics, trade list, HTML / JSON / CSV reports.
* ``models``  - ``backtest_runs`` / ``backtest_trades``; ``tasks`` - sweeps on the ``backtest`` queue.
"""
