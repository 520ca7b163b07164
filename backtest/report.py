"""A backtest's figures of merit, its charts, and its report files (HTML, JSON, CSV).

Metrics (``compute_metrics``) are computed from the equity curve marked at every candle close
and from the trade list. The return-series statistics come from ``empyrical`` (the maintained
``empyrical-reloaded``: Quantopian's definitions, used by pyfolio and zipline); the trade
statistics are a few lines of numpy. Annualisation follows the candle spacing: crypto trades
every day, so a year is 365 x 24 h of candles (``periods_per_year``), e.g. 35,040 15-minute
candles. Definitions, all on per-candle simple returns ``r_i = E_i / E_(i-1) - 1`` where ``E_0``
is the starting equity (the initial quote balance) and ``E_i`` the equity at candle i's close:

* ``total_return`` = E_n / E_0 - 1.
* ``cagr`` = (1 + total_return) ^ (periods_per_year / n) - 1 (``empyrical.annual_return``).
* ``max_drawdown`` = min over i of E_i / max(E_0..E_i) - 1, a negative fraction
  (``empyrical.max_drawdown``).
* ``sharpe`` = mean(r) / std(r, ddof=1) x sqrt(periods_per_year), risk-free rate 0
  (``empyrical.sharpe_ratio``).
* ``sortino`` = mean(r) x periods_per_year / (sqrt(mean(min(r, 0)^2)) x sqrt(periods_per_year)),
  target 0 (``empyrical.sortino_ratio``).
* ``calmar`` = cagr / |max_drawdown| (``empyrical.calmar_ratio``); null without a drawdown.
* ``win_rate`` = trades with pnl > 0 / trades.
* ``profit_factor`` = sum of winning pnl / |sum of losing pnl|; null without a losing trade.
* ``exposure`` = candles of the run during which at least one position was held / candles of
  the run. A position is held from its entry (the decision candle's close) through the candle
  its exit filled in.
* ``average_hold_candles`` = mean of (exit candle open - decision candle open) / timeframe: the
  candles from the entry fill to the close of the exit candle; ``average_hold_hours`` the same
  in hours.
* ``fees_paid`` = sum of the trades' entry and exit fees, in the quote asset.

A ratio that is undefined (no trades, a flat curve) is ``None`` (JSON null), never NaN.
"""

from __future__ import annotations

import csv
import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from backtest.types import BacktestResult, BacktestTrade, SymbolSeries
from infra.clock import timeframe_ms

__all__ = [
    "METRIC_LABELS", "ReportFiles", "candles_figure", "compute_metrics", "equity_figure", "equity_points",
    "figure_json", "format_metric", "periods_per_year", "quote_asset", "trade_rows", "write_report",
]

YEAR_MS = 365 * 24 * 3600 * 1000
MAX_CHART_POINTS = 4000        # a year of 1-minute candles would make a 100 MB page: group them
GREEN, RED, BLUE, GREY = "#1a7f37", "#cf222e", "#0969da", "#57606a"

# key -> (label, kind); kind drives formatting: pct (fraction shown in %), ratio, int, money, hours
METRIC_LABELS: dict[str, tuple[str, str]] = {
    "total_return": ("Total return", "pct"),
    "cagr": ("CAGR", "pct"),
    "max_drawdown": ("Max drawdown", "pct"),
    "sharpe": ("Sharpe", "ratio"),
    "sortino": ("Sortino", "ratio"),
    "calmar": ("Calmar", "ratio"),
    "win_rate": ("Win rate", "pct"),
    "profit_factor": ("Profit factor", "ratio"),
    "exposure": ("Exposure", "pct"),
    "trades": ("Trades", "int"),
    "average_hold_hours": ("Average hold (h)", "ratio"),
    "fees_paid": ("Fees paid", "money"),
    "start_equity": ("Start equity", "money"),
    "final_equity": ("Final equity", "money"),
}


def periods_per_year(tf_ms: int) -> float:
    """Candles in a 365-day year (crypto trades every day)."""
    return YEAR_MS / tf_ms


def quote_asset(universe: Iterable[str]) -> str:
    """The one quote asset of a universe (the config requires one)."""
    return next(iter(universe)).split("/", 1)[1]


def _clean(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _start_equity(result: BacktestResult) -> float:
    """The initial quote balance; when the run also started holding other assets, the first
    marked equity (they cannot be valued before the first close)."""
    quote = quote_asset(result.spec.config.universe)
    balances = result.spec.initial_balances
    if any(asset != quote and Decimal(amount) for asset, amount in balances.items()):
        return float(result.equity[0]) if len(result.equity) else 0.0
    return float(balances.get(quote, 0))


def compute_metrics(result: BacktestResult) -> dict[str, Any]:
    """Every figure of merit of a run (definitions in the module docstring). Ratios are floats
    or None; money (``fees_paid``, equities) is a decimal string in the quote asset."""
    tf = timeframe_ms(result.spec.config.timeframe)
    ppy = periods_per_year(tf)
    equity = np.asarray(result.equity, dtype=np.float64)
    start = _start_equity(result)
    curve = np.concatenate([[start], equity]) if start > 0 else equity
    returns = curve[1:] / curve[:-1] - 1 if len(curve) > 1 else np.zeros(0)
    trades = result.trades
    pnl = np.array([float(t.pnl_quote) for t in trades])
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    fees = sum((t.fees_quote for t in trades), Decimal(0))
    final = float(equity[-1]) if len(equity) else start
    metrics: dict[str, Any] = {
        "total_return": _clean(final / start - 1) if start > 0 else None,
        "cagr": None, "max_drawdown": 0.0, "sharpe": None, "sortino": None, "calmar": None,
        "win_rate": _clean(len(wins) / len(trades)) if trades else None,
        "profit_factor": _clean(wins.sum() / -losses.sum()) if len(losses) else None,
        "exposure": _exposure(trades, result.spec.start_ms, result.spec.end_ms, tf),
        "trades": len(trades),
        "average_hold_candles": _clean(np.mean([(t.exit_time_ms - t.entry_time_ms) / tf for t in trades]))
        if trades else None,
        "average_hold_hours": _clean(np.mean([(t.exit_time_ms - t.entry_time_ms) / 3_600_000 for t in trades]))
        if trades else None,
        "fees_paid": str(fees),
        "start_equity": f"{start:.8f}".rstrip("0").rstrip("."),
        "final_equity": f"{final:.8f}".rstrip("0").rstrip("."),
        "candles": int(len(returns)),
        "periods_per_year": ppy,
    }
    if len(returns):
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):   # a blow-up is None, not a warning
            _return_statistics(metrics, returns, ppy)
    return metrics


def _return_statistics(metrics: dict[str, Any], returns: np.ndarray, ppy: float) -> None:
    """The empyrical part of ``compute_metrics`` (definitions in the module docstring)."""
    import empyrical

    metrics["cagr"] = _clean(empyrical.annual_return(returns, annualization=ppy))
    metrics["max_drawdown"] = _clean(empyrical.max_drawdown(returns)) or 0.0
    if len(returns) > 1 and np.std(returns) > 0:
        metrics["sharpe"] = _clean(empyrical.sharpe_ratio(returns, annualization=ppy))
        metrics["sortino"] = _clean(empyrical.sortino_ratio(returns, annualization=ppy))
    if metrics["max_drawdown"] < 0:
        metrics["calmar"] = _clean(empyrical.calmar_ratio(returns, annualization=ppy))


def _exposure(trades: Sequence[BacktestTrade], start_ms: int, end_ms: int, tf: int) -> float | None:
    first = -(-start_ms // tf) * tf
    n = max(0, -(-(end_ms - first) // tf))
    if not n:
        return None
    held = np.zeros(n, dtype=bool)
    for t in trades:
        lo = max(0, (t.entry_time_ms + tf - first) // tf)       # the candle after the decision candle
        hi = min(n - 1, (t.exit_time_ms - first) // tf)         # the candle the exit filled in
        if hi >= lo:
            held[lo:hi + 1] = True
    return float(held.mean())


def format_metric(key: str, value: Any) -> str:
    """A metric as a person reads it: fractions in %, ratios with 2 decimals, '-' when undefined."""
    kind = METRIC_LABELS.get(key, ("", "ratio"))[1]
    if value is None:
        return "-"
    if kind == "pct":
        return f"{float(value) * 100:+.2f}%" if key in ("total_return", "cagr", "max_drawdown") \
            else f"{float(value) * 100:.1f}%"
    if kind == "int":
        return str(int(value))
    if kind == "money":
        return f"{float(value):,.2f}"
    return f"{float(value):.2f}"


# --- trades and the equity curve as data ----------------------------------------------------------

def trade_rows(trades: Iterable[BacktestTrade]) -> list[dict[str, Any]]:
    """JSON-ready trades (decimals as strings, times in ms and ISO-8601 UTC), entry order."""
    rows = []
    for t in trades:
        rows.append({
            "symbol": t.symbol, "entry_time_ms": int(t.entry_time_ms), "entry_time": _iso(t.entry_time_ms),
            "entry_price": str(t.entry_price), "quantity": str(t.quantity), "stop_price": str(t.stop_price),
            "take_profit_price": str(t.take_profit_price), "exit_time_ms": int(t.exit_time_ms),
            "exit_time": _iso(t.exit_time_ms), "exit_price": str(t.exit_price), "exit_reason": t.exit_reason,
            "fees_quote": str(t.fees_quote), "pnl_quote": str(t.pnl_quote),
            "return_pct": round(t.return_pct, 6),
        })
    return rows


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def equity_points(times_ms: Sequence[int] | np.ndarray, equity: Sequence[float] | np.ndarray,
                  max_points: int = MAX_CHART_POINTS) -> list[list[float]]:
    """``[[t_ms, equity], ...]`` with at most ``max_points`` points: a longer curve is cut into
    groups, each giving its lowest point (so the drawdown stays visible) and its last one."""
    times = np.asarray(times_ms, dtype=np.int64)
    values = np.asarray(equity, dtype=np.float64)
    n = len(values)
    if n <= max_points:
        return [[int(t), float(v)] for t, v in zip(times, values, strict=True)]
    size = -(-n // (max_points // 2))
    keep: set[int] = {0, n - 1}
    for lo in range(0, n, size):
        hi = min(n, lo + size)
        keep.add(lo + int(np.argmin(values[lo:hi])))
        keep.add(hi - 1)
    return [[int(times[i]), float(values[i])] for i in sorted(keep)]


# --- figures (plotly; the HTML report and the dashboard draw the same ones) ------------------------

def _axis_time(ms: Iterable[int]) -> list[str]:
    return [datetime.fromtimestamp(t / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M") for t in ms]


def _layout(fig: go.Figure, *, title: str, height: int) -> go.Figure:
    fig.update_layout(title={"text": title, "x": 0.01, "font": {"size": 14}}, height=height,
                      margin={"l": 60, "r": 20, "t": 40, "b": 36}, template="plotly_white",
                      legend={"orientation": "h", "y": -0.12}, xaxis_rangeslider_visible=False)
    return fig


def equity_figure(points: Sequence[Sequence[float]], *, quote: str, title: str = "Equity and drawdown") -> go.Figure:
    """Equity on top, drawdown from the running peak (in %) below, on one time axis (UTC)."""
    times = [int(p[0]) for p in points]
    values = np.array([float(p[1]) for p in points])
    peak = np.maximum.accumulate(values) if len(values) else values
    drawdown = (values / peak - 1) * 100 if len(values) else values
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.05)
    x = _axis_time(times)
    fig.add_trace(go.Scatter(x=x, y=values.tolist(), mode="lines", name="equity", line={"color": BLUE, "width": 2},
                             hovertemplate="%{x} UTC<br>%{y:,.2f}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=drawdown.tolist(), mode="lines", name="drawdown", fill="tozeroy",
                             line={"color": RED, "width": 1}, hovertemplate="%{x} UTC<br>%{y:.2f}%<extra></extra>"),
                  row=2, col=1)
    fig.update_yaxes(title_text=quote, tickformat=",.2f", row=1, col=1)
    fig.update_yaxes(title_text="drawdown %", row=2, col=1)
    fig.update_xaxes(title_text="time (UTC)", row=2, col=1)
    return _layout(fig, title=title, height=420)


def candles_figure(series: SymbolSeries, trades: Sequence[Mapping[str, Any]], *, timeframe: str,
                   start_ms: int) -> go.Figure:
    """The symbol's candles of the run (grouped into coarser candles past ``MAX_CHART_POINTS``)
    with a triangle at every entry (decision candle, entry price) and exit (exit candle, fill price)."""
    tf = timeframe_ms(timeframe)
    inside = series.open_time_ms >= start_ms
    t, o, h, lo, c = (series.open_time_ms[inside], series.open[inside], series.high[inside],
                      series.low[inside], series.close[inside])
    group = max(1, -(-len(t) // MAX_CHART_POINTS))
    if group > 1:
        starts = np.arange(0, len(t), group)
        o, c = o[starts], c[np.minimum(starts + group, len(t)) - 1]
        h, lo = np.maximum.reduceat(h, starts), np.minimum.reduceat(lo, starts)
        t = t[starts]
    title = f"{series.symbol} · {timeframe} candles" + (f" (grouped by {group})" if group > 1 else "")
    fig = go.Figure(go.Candlestick(x=_axis_time(t), open=o.tolist(), high=h.tolist(), low=lo.tolist(),
                                   close=c.tolist(), name="candles", increasing_line_color=GREEN,
                                   decreasing_line_color=RED, showlegend=False))
    mine = [tr for tr in trades if tr["symbol"] == series.symbol]

    def bucket(ms: int) -> int:       # the (grouped) candle a time falls in, so markers sit on a candle
        return int(t[0] + ((ms - t[0]) // (tf * group)) * tf * group) if len(t) else ms

    if mine:
        fig.add_trace(go.Scatter(
            x=_axis_time(bucket(tr["entry_time_ms"]) for tr in mine), y=[float(tr["entry_price"]) for tr in mine],
            mode="markers", name="entry", text=[f"entry {tr['quantity']} @ {tr['entry_price']}" for tr in mine],
            hovertemplate="%{text}<br>%{x} UTC<extra></extra>",
            marker={"symbol": "triangle-up", "color": GREEN, "size": 13, "line": {"width": 1, "color": "#fff"}}))
        fig.add_trace(go.Scatter(
            x=_axis_time(bucket(tr["exit_time_ms"]) for tr in mine), y=[float(tr["exit_price"]) for tr in mine],
            mode="markers", name="exit",
            text=[f"{tr['exit_reason']} @ {tr['exit_price']} (pnl {float(tr['pnl_quote']):+.2f})" for tr in mine],
            hovertemplate="%{text}<br>%{x} UTC<extra></extra>",
            marker={"symbol": "triangle-down", "color": BLUE, "size": 13, "line": {"width": 1, "color": "#fff"}}))
    fig.update_yaxes(title_text="price")
    fig.update_xaxes(title_text="time (UTC)")
    return _layout(fig, title=title, height=380)


def figure_json(fig: go.Figure) -> dict[str, Any]:
    """A figure as plain JSON for ``Plotly.react`` in a page."""
    from plotly.utils import PlotlyJSONEncoder

    return json.loads(json.dumps({"data": fig.data, "layout": fig.layout}, cls=PlotlyJSONEncoder))


# --- files ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReportFiles:
    html: Path
    json: Path
    trades_csv: Path
    equity_csv: Path


TRADE_COLUMNS = ["symbol", "entry_time", "entry_price", "quantity", "stop_price", "take_profit_price", "exit_time",
                 "exit_price", "exit_reason", "fees_quote", "pnl_quote", "return_pct"]


def write_report(*, out_dir: Path, run_id: int | None, title: str, document: Mapping[str, Any],
                 series: Mapping[str, SymbolSeries]) -> ReportFiles:
    """Writes ``report.html`` (self-contained: plotly.js inlined, works offline), ``report.json``
    (``document``: spec, data source, metrics, decisions, trades, equity), ``trades.csv`` and
    ``equity.csv`` into ``out_dir``. ``document`` is what ``backtest.services`` stores too."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(html=out_dir / "report.html", json=out_dir / "report.json",
                        trades_csv=out_dir / "trades.csv", equity_csv=out_dir / "equity.csv")
    files.json.write_text(json.dumps({"run_id": run_id, **document}, indent=2, default=str) + "\n")
    with files.trades_csv.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=TRADE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(document["trades"])
    with files.equity_csv.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["time", "time_ms", "equity"])
        writer.writerows([_iso(int(t)), int(t), f"{v:.8f}"] for t, v in document["equity"])
    files.html.write_text(report_html(title=title, document=document, series=series))
    return files


def report_html(*, title: str, document: Mapping[str, Any], series: Mapping[str, SymbolSeries]) -> str:
    spec = document["spec"]
    quote = quote_asset(spec["config"]["universe"])
    figures = [equity_figure(document["equity"], quote=quote)]
    figures += [candles_figure(s, document["trades"], timeframe=spec["config"]["timeframe"], start_ms=spec["start_ms"])
                for s in series.values()]
    charts = "\n".join(f'<div class="chart">{fig.to_html(full_html=False, include_plotlyjs=(i == 0))}</div>'
                       for i, fig in enumerate(figures))
    esc = html.escape
    metrics = document["metrics"]
    metric_cells = "".join(f"<tr><th>{esc(label)}</th><td id='metric-{key}'>{esc(format_metric(key, metrics.get(key)))}"
                           f"</td></tr>" for key, (label, _) in METRIC_LABELS.items())
    trade_cells = "".join(
        "<tr>" + "".join(f"<td>{esc(str(tr[c]))}</td>" for c in TRADE_COLUMNS) + "</tr>" for tr in document["trades"])
    spec_lines = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in _spec_summary(document))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
 body {{ font-family: system-ui, sans-serif; margin: 24px; color: #1f2328; }}
 table {{ border-collapse: collapse; margin: 8px 0 24px; font-size: 13px; }}
 th, td {{ border-bottom: 1px solid #d0d7de; padding: 4px 10px; text-align: left; }}
 td {{ font-variant-numeric: tabular-nums; }}
 .grid {{ display: flex; gap: 40px; flex-wrap: wrap; }}
 .chart {{ margin-bottom: 16px; }}
</style></head>
<body>
<h1>{esc(title)}</h1>
<div class="grid">
<section><h2>Run</h2><table>{spec_lines}</table></section>
<section><h2>Metrics</h2><table id="metrics">{metric_cells}</table></section>
</div>
<h2>Charts</h2>
{charts}
<h2>Trades ({len(document["trades"])})</h2>
<table id="trades"><tr>{"".join(f"<th>{c}</th>" for c in TRADE_COLUMNS)}</tr>{trade_cells}</table>
</body></html>
"""


def _spec_summary(document: Mapping[str, Any]) -> list[tuple[str, Any]]:
    spec = document["spec"]
    config = spec["config"]
    return [
        ("universe", ", ".join(config["universe"])), ("timeframe", config["timeframe"]),
        ("from", _iso(spec["start_ms"])), ("to (exclusive)", _iso(spec["end_ms"])),
        ("initial balances", ", ".join(f"{a} {v}" for a, v in spec["initial_balances"].items())),
        ("fee rate", spec["fee_rate"]), ("slippage (bps)", spec["slippage_bps"]),
        ("parameters changed", ", ".join(f"{k}={','.join(v) if isinstance(v, list) else v}"
                                         for k, v in document.get("overrides", {}).items()) or "none"),
        ("data", document.get("data_source_label", "")),
        ("candles processed", document.get("candles_processed")),
    ]
