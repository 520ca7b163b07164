"""Plotly figures of the dashboard, built in Python and drawn by the plotly.js that the
``plotly`` package ships (served from our own static files: nothing comes from a CDN).

Times on every axis are Hong Kong wall time (the axis titles say HKT): operators think in the
trading day, and the tick ids are HK time too. A backtest report can build its figures with
the same functions and the same library.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import plotly.graph_objects as go
from plotly.utils import PlotlyJSONEncoder

from infra.clock import to_hk

GREEN, RED, BLUE, ORANGE, GREY = "#1a7f37", "#cf222e", "#0969da", "#bf8700", "#57606a"
MARKER_STYLE = {
    "entry": {"symbol": "triangle-up", "color": GREEN, "size": 14},
    "exit": {"symbol": "triangle-down", "color": BLUE, "size": 14},
    "stop": {"symbol": "x", "color": RED, "size": 11},
}


def _hk(moment: datetime) -> str:
    """Naive HK wall time: plotly draws it as given, so the axis reads in HKT."""
    return to_hk(moment).strftime("%Y-%m-%d %H:%M:%S")


def _layout(fig: go.Figure, *, title: str, height: int, y_title: str) -> go.Figure:
    fig.update_layout(title={"text": title, "x": 0.01, "font": {"size": 14}}, height=height,
                      margin={"l": 60, "r": 20, "t": 36, "b": 36}, template="plotly_white",
                      legend={"orientation": "h", "y": -0.15}, xaxis_rangeslider_visible=False,
                      uirevision="keep")     # a refresh keeps the operator's zoom
    fig.update_xaxes(title_text="time (HKT)", title_font={"size": 11})
    fig.update_yaxes(title_text=y_title, title_font={"size": 11})
    return fig


def equity_figure(curve: dict[str, Any]) -> go.Figure:
    points = curve["points"]
    fig = go.Figure(go.Scatter(x=[_hk(datetime.fromisoformat(p["t"])) for p in points],
                               y=[float(p["equity"]) for p in points], mode="lines", name="equity",
                               line={"color": BLUE, "width": 2}, hovertemplate="%{x} HKT<br>%{y:,.2f}<extra></extra>"))
    fig = _layout(fig, title="Equity (last 24 h)", height=260, y_title=curve.get("quote") or "quote")
    fig.update_yaxes(tickformat=",.2f")
    return fig


def symbol_figure(chart: dict[str, Any]) -> go.Figure:
    candles = chart["candles"]
    fig = go.Figure(go.Candlestick(
        x=[_hk(c.open_time) for c in candles], open=[float(c.open) for c in candles],
        high=[float(c.high) for c in candles], low=[float(c.low) for c in candles],
        close=[float(c.close) for c in candles], name="candles", increasing_line_color=GREEN,
        decreasing_line_color=RED, showlegend=False))
    for level in chart["levels"]:
        fig.add_trace(go.Scatter(
            x=[_hk(level["start"]), _hk(level["end"])], y=[float(level["price"])] * 2, mode="lines",
            name=level["label"], showlegend=False, hoverinfo="name",
            line={"color": RED if level["kind"] == "stop" else GREEN, "dash": "dash", "width": 1}))
    for kind, style in MARKER_STYLE.items():
        marks = [m for m in chart["markers"] if m.kind == kind]
        if not marks:
            continue
        fig.add_trace(go.Scatter(
            x=[_hk(m.at) for m in marks], y=[float(m.price) for m in marks], mode="markers", name=kind,
            text=[m.label for m in marks], hovertemplate="%{text}<br>%{x} HKT<extra></extra>",
            marker={"symbol": style["symbol"], "color": style["color"], "size": style["size"],
                    "line": {"width": 1, "color": "#ffffff"}}))
    title = f"{chart['symbol']} · {chart['timeframe']} candles"
    if not candles:
        title += " · no candles stored yet"
    return _layout(fig, title=title, height=320, y_title="price")


def figure_json(fig: go.Figure) -> dict[str, Any]:
    """A figure as plain JSON for ``Plotly.react`` in the page."""
    return json.loads(json.dumps({"data": fig.data, "layout": fig.layout}, cls=PlotlyJSONEncoder))
