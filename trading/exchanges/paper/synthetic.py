"""Seeded synthetic market data: the offline default data source (``EXCHANGE=paper``).

Every number is a pure function of ``(seed, symbol, minute)``: any process - syncer
workers on several machines, the paper venue pricing a fill, a restarted worker, a test -
that asks for the candle at time T gets the same candle, without shared state and without
generating history from some epoch. Randomness comes from blake2b of
``(seed, symbol, "1m", bucket)`` (never Python's salted ``hash()``) expanded by a vectorised
SplitMix64 counter, so a bucket's numbers do not depend on which range was requested.

Model (all in log-price, per symbol):

* **Base price** - BTC ~60000, ETH ~3000, SOL ~150, BNB ~600, XRP ~0.6; other symbols get a
  price between 0.01 and 1000 (and a volatility) from a hash of the base asset.
* **Regimes** - time is cut into buckets of 64 one-minute candles. Each bucket draws a
  regime: calm (low volatility, no trend), trending up, trending down, or volatile (high
  volatility). A trending bucket adds a step of about 12 per-minute sigmas to the level.
* **Level** - the trend level at a bucket boundary is a fixed-length weighted sum of the
  previous 24 buckets' steps (weights fading linearly). That makes trends persist and
  reverse like real ones while keeping the price bounded around its base, and it is still
  computable at any time from a fixed number of buckets.
* **Noise** - inside a bucket, a Brownian bridge of per-minute Gaussian steps scaled by the
  regime's volatility (the bridge is pinned to 0 at both bucket ends, so buckets join
  continuously); plus two slow components (knots every 1024 and 16384 minutes) for
  intraday and multi-day swings.
* **Candles** - open = price at the minute's start, close = price at its end (so every open
  equals the previous close exactly); high / low are sampled from the distribution of a
  Brownian bridge's maximum / minimum between open and close.
* **Volume** - a per-symbol USD turnover per minute, converted to base units, scaled by
  regime and (mildly) by the size of the move, with log-normal noise; a close that breaks
  out of the previous 20 candles' range comes with a 1.5-3.5x volume spike 30% of the time
  (breakouts on volume are what the B-lite volume filter looks for, and most breakouts in
  real markets do *not* come with one), plus rare unrelated bursts.

Calibration (measured over 60 random hours, two seeds): with the default B-lite parameters
on 1-minute candles, a BTC/ETH/SOL/BNB/XRP universe shows about 6 entry signals an hour;
~98% of hours have one within 60 candles and ~85% within 30; the stop or take-profit of an
entry (``stops.evaluate_exit``) is hit after a median of ~8 candles (90th percentile ~22).
``tests/syncer/test_synthetic.py`` keeps this true.

Timeframes: 1m is the base series; 5m / 15m / 1h candles are *aggregated* from it (open of
the first minute, max high, min low, close of the last, summed volume). So all timeframes
and ``price_at`` describe one and the same market - a strategy on 5m candles and the paper
venue filling at ``price_at`` agree. Candles open on multiples of the timeframe since the
epoch, as on Binance and Bybit.

Output: ``Candle`` (``trading.exchanges.base``: open_time_ms, open, high, low, close,
volume) with prices as Decimal multiples of the symbol's fixed ``tick_size`` (about 7
significant digits at the base price, e.g. 0.01 for BTC) and volume as a multiple of its
``volume_step``. For backtests, ``candle_arrays`` returns the same candles as float arrays.

Reproducibility across machines: the maths is NumPy float64 (exp/log/sqrt/cos). Different
CPUs may differ in the last bit of a transcendental function; quantising to ~7 significant
digits absorbs that except when a value lands within ~1e-16 of a rounding boundary, i.e.
practically never.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from infra.clock import TIMEFRAME_SECONDS
from trading.exchanges.base import Candle

__all__ = [
    "DEFAULT_SEED", "MAX_LIMIT", "SUPPORTED_TIMEFRAMES", "CandleArrays", "SymbolProfile", "SyntheticMarket",
    "fetch_closed_candles", "forming_candle", "price_at", "symbol_profile",
]

DEFAULT_SEED = 20240601

MINUTE_MS = 60_000
SUPPORTED_TIMEFRAMES: dict[str, int] = {tf: s * 1000 for tf, s in TIMEFRAME_SECONDS.items()}   # infra.clock's table
MAX_LIMIT = 5000                     # per request; venues allow 1000, backtests may want more

_BUCKET = 64                         # minutes per regime bucket
_LEVEL_WINDOW = 24                   # buckets whose steps make up the trend level
_BREAKOUT_LOOKBACK = 20              # range that a volume spike reacts to
_STREAMS = 128                       # counter slots per minute (candle draws + per-second jitter)
_BUCKET_SLOT = _BUCKET * _STREAMS    # counter slot of bucket-level draws (after all minutes)
_U64 = np.uint64

# Regime table: (cumulative probability, volatility multiple, volume multiple).
_CALM, _UP, _DOWN, _VOLATILE = 0, 1, 2, 3
_REGIME_CUM = np.array([0.30, 0.55, 0.80, 1.0])
_REGIME_VOL = np.array([0.55, 1.0, 1.0, 2.2])
_REGIME_VOLUME = np.array([0.7, 1.0, 1.0, 1.8])
_SPIKE_PROB = 0.3                   # share of range breakouts that come with a volume spike
_SPIKE_MIN, _SPIKE_MAX = 1.5, 3.5     # spike size (x normal volume)
_MOVE_VOLUME = 0.2                  # how much volume grows with the size of the move
_VOLUME_NOISE = 0.25                # log-normal sigma of volume noise
_TREND_STEP_SIGMAS = 12.0            # a trending bucket moves ~12 per-minute sigmas (~1.5 bucket sigmas)


@dataclass(frozen=True)
class SymbolProfile:
    """What makes a symbol itself: price level, volatility, liquidity, increments."""

    symbol: str
    base_price: float
    sigma_1m: float                  # per-minute log-return stdev in a "normal" regime
    usd_per_minute: float            # typical turnover, sets volume
    tick_size: Decimal
    volume_step: Decimal


# Known majors, roughly as they trade: (price, per-minute sigma, USD turnover per minute).
_KNOWN: dict[str, tuple[float, float, float]] = {
    "BTC": (60_000.0, 0.0007, 2_000_000.0),
    "ETH": (3_000.0, 0.0009, 1_000_000.0),
    "SOL": (150.0, 0.0013, 400_000.0),
    "BNB": (600.0, 0.0008, 150_000.0),
    "XRP": (0.6, 0.0011, 200_000.0),
}
_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "USD")


def _base_asset(symbol: str) -> str:
    s = symbol.upper()
    if "/" in s:
        return s.split("/", 1)[0]
    for q in _QUOTES:
        if s.endswith(q) and len(s) > len(q):
            return s[: -len(q)]
    return s


def _digest_u64(*parts: object) -> int:
    data = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _unit(*parts: object) -> float:
    """A stable uniform in [0, 1) from a hash of ``parts``."""
    return (_digest_u64(*parts) >> 11) * 2.0 ** -53


def _pow10_step(value: float, significant: int) -> Decimal:
    """10^k such that ``value`` has about ``significant`` digits at that step."""
    exp = math.floor(math.log10(value)) - (significant - 1)
    return Decimal(1).scaleb(exp)


@lru_cache(maxsize=4096)
def symbol_profile(symbol: str) -> SymbolProfile:
    """The symbol's fixed characteristics; unknown symbols are derived from a hash of the base asset."""
    if not symbol or not symbol.strip():
        raise ValueError("symbol must be a non-empty string")
    base = _base_asset(symbol)
    if base in _KNOWN:
        price, sigma, usd = _KNOWN[base]
    else:
        # Not seeded by the market seed: a symbol's price level should not change with it.
        price = 10.0 ** (-2.0 + 5.0 * _unit("profile-price", base))
        sigma = 0.0008 + 0.0012 * _unit("profile-sigma", base)
        usd = 10.0 ** (4.0 + 1.5 * _unit("profile-usd", base))
    return SymbolProfile(
        symbol=symbol, base_price=price, sigma_1m=sigma, usd_per_minute=usd,
        tick_size=_pow10_step(price, 7), volume_step=_pow10_step(usd / price, 5),
    )


# --- counter-based random numbers ------------------------------------------------------------

_GOLDEN = _U64(0x9E3779B97F4A7C15)
_MIX1 = _U64(0xBF58476D1CE4E5B9)
_MIX2 = _U64(0x94D049BB133111EB)


def _splitmix(keys: NDArray[np.uint64], counters: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """SplitMix64 output number ``counter`` of the stream seeded by ``key`` (broadcasting)."""
    # uint64 arithmetic wraps modulo 2^64, as the algorithm intends.
    with np.errstate(over="ignore"):
        z = np.asarray(keys, dtype=np.uint64) + (np.asarray(counters, dtype=np.uint64) + _U64(1)) * _GOLDEN
        z = (z ^ (z >> _U64(30))) * _MIX1
        z = (z ^ (z >> _U64(27))) * _MIX2
        return z ^ (z >> _U64(31))


def _uniform(keys: NDArray[np.uint64], counters: NDArray[np.uint64]) -> NDArray[np.float64]:
    """Uniform in (0, 1] - never 0, so ``log(u)`` is finite."""
    return ((_splitmix(keys, counters) >> _U64(11)).astype(np.float64) + 1.0) * 2.0 ** -53


def _normal(keys: NDArray[np.uint64], c1: NDArray[np.uint64], c2: NDArray[np.uint64]) -> NDArray[np.float64]:
    """Standard normal by Box-Muller from two counter slots."""
    u1 = _uniform(keys, c1)
    u2 = _uniform(keys, c2)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


# Per-minute counter slots (stream numbers within a minute's _STREAMS).
_S_EPS1, _S_EPS2, _S_HIGH, _S_LOW, _S_VOL1, _S_VOL2, _S_SPIKE, _S_SPIKE_SIZE, _S_NEWS = range(9)
_S_EXT_A, _S_EXT_B = 9, 10           # where in the minute the high / low happen
_S_JITTER = 16                       # + second (0..59)
# Bucket-level slots (offset by _BUCKET_SLOT).
_B_REGIME, _B_STEP = 0, 1


@dataclass(frozen=True)
class CandleArrays:
    """Candles as arrays (oldest first). Prices are already tick-quantised floats."""

    open_time_ms: NDArray[np.int64]
    open: NDArray[np.float64]
    high: NDArray[np.float64]
    low: NDArray[np.float64]
    close: NDArray[np.float64]
    volume: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.open_time_ms.shape[0])


class SyntheticMarket:
    """The synthetic market for one seed. Cheap to construct; holds only caches of hashes."""

    def __init__(self, seed: int = DEFAULT_SEED) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        self.seed = seed

    # -- hashing --------------------------------------------------------------------------

    def _bucket_keys(self, symbol: str, k0: int, k1: int) -> NDArray[np.uint64]:
        """Keys of buckets k0..k1 inclusive (one blake2b each)."""
        return np.array([_digest_u64("synthetic-v1", self.seed, symbol, "1m", k) for k in range(k0, k1 + 1)],
                        dtype=np.uint64)

    def _knots(self, symbol: str, scale: int, i0: int, i1: int) -> NDArray[np.float64]:
        """Standard normal value-noise knots i0..i1 for a slow component of period ``scale`` minutes."""
        keys = np.array(
            [_digest_u64("synthetic-v1-knot", self.seed, symbol, scale, i) for i in range(i0, i1 + 1)],
            dtype=np.uint64,
        )
        zero = np.zeros_like(keys)
        return _normal(keys, zero, zero + _U64(1))

    def _slow(self, symbol: str, minutes: NDArray[np.int64], scale: int) -> NDArray[np.float64]:
        i = minutes // scale
        i0, i1 = int(i.min()), int(i.max()) + 1
        knots = self._knots(symbol, scale, i0, i1)
        frac = (minutes - i * scale) / scale
        a = knots[i - i0]
        b = knots[i - i0 + 1]
        return a + (b - a) * frac

    # -- the 1-minute series -----------------------------------------------------------------

    def _log_price_and_sigma(
        self, prof: SymbolProfile, m0: int, m1: int,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64], NDArray[np.uint64]]:
        """Log price at every minute boundary m0..m1 (inclusive), and per minute m0..m1-1 its
        sigma, regime and bucket key."""
        symbol = prof.symbol
        k0, k1 = m0 // _BUCKET, m1 // _BUCKET
        # Bucket-level draws for the level window before k0 through k1.
        kw0 = k0 - _LEVEL_WINDOW
        keys_all = self._bucket_keys(symbol, kw0, k1)
        slot = _U64(_BUCKET_SLOT)
        u_regime = _uniform(keys_all, slot + _U64(_B_REGIME))
        u_step = _uniform(keys_all, slot + _U64(_B_STEP))
        regime = np.searchsorted(_REGIME_CUM, u_regime, side="left").clip(0, 3)
        # Trend step per bucket (log units): +/- 0.6..1.4 x the typical trend for trending
        # buckets, a small random drift for volatile ones, none when calm.
        typical = _TREND_STEP_SIGMAS * prof.sigma_1m
        magnitude = typical * (0.6 + 0.8 * u_step)
        step = np.where(regime == _UP, magnitude, 0.0)
        step = np.where(regime == _DOWN, -magnitude, step)
        step = np.where(regime == _VOLATILE, typical * (u_step - 0.5), step)
        # Level at the start of bucket k: sum_{m=1..W} (W+1-m)/W * step[k-m].
        weights = (_LEVEL_WINDOW + 1 - np.arange(1, _LEVEL_WINDOW + 1)) / _LEVEL_WINDOW
        n_levels = k1 - k0 + 2                                   # levels for buckets k0..k1+1
        level = np.zeros(n_levels)
        for m, wgt in enumerate(weights, start=1):
            # Bucket (k - m) sits at index (k - m - kw0) of ``step``: 0 for k0 - W, last for k1.
            level += wgt * step[np.arange(k0, k1 + 2) - m - kw0]

        # Minute-level noise for buckets k0..k1: Brownian bridges pinned at bucket ends.
        nb = k1 - k0 + 1
        keys = keys_all[k0 - kw0:]
        sigma_b = prof.sigma_1m * _REGIME_VOL[regime[k0 - kw0:]]
        j = np.arange(_BUCKET, dtype=np.uint64)
        c = j * _U64(_STREAMS)
        eps = _normal(keys[:, None], c[None, :] + _U64(_S_EPS1), c[None, :] + _U64(_S_EPS2))
        walk = np.zeros((nb, _BUCKET + 1))
        np.cumsum(eps * sigma_b[:, None], axis=1, out=walk[:, 1:])
        bridge = walk - (np.arange(_BUCKET + 1) / _BUCKET)[None, :] * walk[:, -1:]

        boundaries = np.arange(m0, m1 + 1, dtype=np.int64)
        kb = boundaries // _BUCKET
        jb = boundaries - kb * _BUCKET
        frac = jb / _BUCKET
        lvl = level[kb - k0] + (level[kb - k0 + 1] - level[kb - k0]) * frac
        noise = bridge[kb - k0, jb]
        slow = (self._slow(symbol, boundaries, 1024) * (25.0 * prof.sigma_1m)
                + self._slow(symbol, boundaries, 16384) * (60.0 * prof.sigma_1m))
        log_p = math.log(prof.base_price) + lvl + noise + slow

        minutes = boundaries[:-1]
        km = minutes // _BUCKET - k0
        return log_p, sigma_b[km], regime[k0 - kw0:][km], keys[km]

    def _minutes(self, symbol: str, m0: int, m1: int) -> dict[str, NDArray[np.float64]]:
        """Unquantised 1-minute candles for minutes m0..m1-1 (m1 > m0)."""
        prof = symbol_profile(symbol)
        # Start early enough to know the breakout range of the first requested minute.
        e0 = m0 - _BREAKOUT_LOOKBACK
        log_p, sigma, regime, keys = self._log_price_and_sigma(prof, e0, m1)
        minute_idx = np.arange(e0, m1, dtype=np.int64)
        slot = (minute_idx % _BUCKET).astype(np.uint64) * _U64(_STREAMS)
        a, b = log_p[:-1], log_p[1:]
        half = 0.5 * (b - a)
        mid = 0.5 * (a + b)
        var = sigma * sigma
        # Max (min) of a Brownian bridge from a to b with variance var: P(M >= m) =
        # exp(-2 (m - a)(m - b) / var); inverted for a uniform draw.
        u_hi = _uniform(keys, slot + _U64(_S_HIGH))
        u_lo = _uniform(keys, slot + _U64(_S_LOW))
        log_hi = mid + np.sqrt(half * half - 0.5 * var * np.log(u_hi))
        log_lo = mid - np.sqrt(half * half - 0.5 * var * np.log(u_lo))
        o, c, h, lo = np.exp(a), np.exp(b), np.exp(log_hi), np.exp(log_lo)
        # exp() may round a hair differently for equal log values; pin the ordering.
        h = np.maximum(h, np.maximum(o, c))
        lo = np.minimum(lo, np.minimum(o, c))

        n = m1 - m0
        prev_hi = sliding_window_view(h[:-1], _BREAKOUT_LOOKBACK)[:n].max(axis=1)
        prev_lo = sliding_window_view(lo[:-1], _BREAKOUT_LOOKBACK)[:n].min(axis=1)
        o, h, lo, c = o[-n:], h[-n:], lo[-n:], c[-n:]
        keys, slot, sigma, regime = keys[-n:], slot[-n:], sigma[-n:], regime[-n:]
        breakout = (c > prev_hi) | (c < prev_lo)

        move = np.abs(np.log(c / o)) / sigma
        z = _normal(keys, slot + _U64(_S_VOL1), slot + _U64(_S_VOL2))
        noise = np.exp(_VOLUME_NOISE * z - 0.5 * _VOLUME_NOISE**2)            # mean 1
        spike_on = _uniform(keys, slot + _U64(_S_SPIKE)) <= _SPIKE_PROB
        spike = _SPIKE_MIN + (_SPIKE_MAX - _SPIKE_MIN) * _uniform(keys, slot + _U64(_S_SPIKE_SIZE))
        news = _uniform(keys, slot + _U64(_S_NEWS)) <= 0.01      # unrelated bursts (1% of minutes)
        factor = np.where(breakout & spike_on, spike, 1.0) * np.where(news, 2.5, 1.0)
        activity = _REGIME_VOLUME[regime] * (1.0 - _MOVE_VOLUME + _MOVE_VOLUME * move)
        volume = (prof.usd_per_minute / c) * activity * noise * factor
        return {"open": o, "high": h, "low": lo, "close": c, "volume": volume}

    # -- public API ---------------------------------------------------------------------------

    def candle_arrays(self, symbol: str, timeframe: str, start_open_ms: int, count: int) -> CandleArrays:
        """``count`` candles from the one opening at ``start_open_ms`` (aligned to the timeframe),
        quantised exactly as ``fetch_closed_candles`` returns them, as float arrays. No
        "closed" check: this is the backtest / test door; live code uses ``fetch_closed_candles``."""
        tf_ms = _timeframe_ms(timeframe)
        if start_open_ms % tf_ms:
            raise ValueError(f"start_open_ms {start_open_ms} is not aligned to {timeframe}")
        if count <= 0:
            empty_f = np.zeros(0)
            return CandleArrays(np.zeros(0, dtype=np.int64), empty_f, empty_f, empty_f, empty_f, empty_f)
        per = tf_ms // MINUTE_MS
        m0 = start_open_ms // MINUTE_MS
        mins = self._minutes(symbol, m0, m0 + count * per)
        if per == 1:
            o, h, lo, c, v = mins["open"], mins["high"], mins["low"], mins["close"], mins["volume"]
        else:
            o = mins["open"].reshape(count, per)[:, 0]
            h = mins["high"].reshape(count, per).max(axis=1)
            lo = mins["low"].reshape(count, per).min(axis=1)
            c = mins["close"].reshape(count, per)[:, -1]
            v = mins["volume"].reshape(count, per).sum(axis=1)
        prof = symbol_profile(symbol)
        tick = float(prof.tick_size)
        vstep = float(prof.volume_step)
        times = start_open_ms + np.arange(count, dtype=np.int64) * tf_ms
        return CandleArrays(
            open_time_ms=times,
            open=np.rint(o / tick) * tick, high=np.rint(h / tick) * tick,
            low=np.rint(lo / tick) * tick, close=np.rint(c / tick) * tick,
            volume=np.maximum(np.rint(v / vstep), 1.0) * vstep,
        )

    def fetch_closed_candles(
        self, symbol: str, timeframe: str, *, since_ms: int | None = None, limit: int = 500, now_ms: int,
    ) -> list[Candle]:
        """Closed candles (close time <= ``now_ms``), oldest first, like a venue's klines call.

        ``since_ms``: first candle opening at or after it; None -> the latest ``limit`` closed
        candles. At most ``limit`` (1..MAX_LIMIT) candles; [] when none has closed in range.
        """
        tf_ms = _timeframe_ms(timeframe)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be an int in 1..{MAX_LIMIT}, got {limit!r}")
        last_open = (now_ms - tf_ms) // tf_ms * tf_ms          # newest candle with open + tf <= now
        if since_ms is None:
            start = last_open - (limit - 1) * tf_ms
        else:
            start = -(-since_ms // tf_ms) * tf_ms              # first aligned open >= since_ms
        start = max(start, 0)
        end = min(start + (limit - 1) * tf_ms, last_open)
        if end < start:
            return []
        arr = self.candle_arrays(symbol, timeframe, start, (end - start) // tf_ms + 1)
        return _to_source_candles(arr, symbol_profile(symbol))

    def _second_path(self, symbol: str, minute: int) -> NDArray[np.float64]:
        """Prices at each second 0..59 of one minute (unquantised): through open at second 0,
        the high and the low at two hashed seconds, towards the close, with bounded jitter."""
        m = self._minutes(symbol, minute, minute + 1)
        o, h, lo, c = (float(m[k][0]) for k in ("open", "high", "low", "close"))
        key = self._bucket_keys(symbol, minute // _BUCKET, minute // _BUCKET)
        slot = _U64((minute % _BUCKET) * _STREAMS)
        ua, ub = _uniform(key, np.array([slot + _U64(_S_EXT_A), slot + _U64(_S_EXT_B)], dtype=np.uint64))
        s_a = 1 + int(ua * 58)                         # 1..58
        s_b = 1 + int(ub * 57)                         # 1..57, shifted past s_a below
        if s_b >= s_a:
            s_b += 1
        s_hi, s_lo = (s_a, s_b) if c >= o else (s_b, s_a)   # up candles tend to dip first
        xs = sorted([(0, o), (s_hi, h), (s_lo, lo), (60, c)])
        path = np.interp(np.arange(60), [x for x, _ in xs], [y for _, y in xs])
        jitter = _uniform(key, slot + _U64(_S_JITTER) + np.arange(60, dtype=np.uint64)) - 0.5
        path = np.clip(path + jitter * 0.3 * (h - lo), lo, h)
        path[0], path[s_hi], path[s_lo] = o, h, lo
        return path

    def price_at(self, symbol: str, t_ms: int) -> Decimal:
        """Last traded price at ``t_ms`` (changes once a second), inside the forming 1m candle's
        range: the candle's open at its first second, its high and low at some seconds, and
        never outside them - so a ticker never contradicts the candle that later closes."""
        minute, ms = divmod(int(t_ms), MINUTE_MS)
        path = self._second_path(symbol, minute)
        prof = symbol_profile(symbol)
        return _quantise(float(path[ms // 1000]), prof.tick_size)

    def forming_candle(self, symbol: str, timeframe: str, now_ms: int) -> Candle:
        """The still-forming candle as of ``now_ms``: open, high / low so far, last price as
        close, volume so far (the forming minute's volume pro rata). ``price_at(now_ms)`` is
        its close, and its high / low bound every ``price_at`` since its open."""
        tf_ms = _timeframe_ms(timeframe)
        prof = symbol_profile(symbol)
        open_ms = now_ms // tf_ms * tf_ms
        minute, ms = divmod(int(now_ms), MINUTE_MS)
        second = ms // 1000
        path = self._second_path(symbol, minute)[: second + 1]
        cur = self._minutes(symbol, minute, minute + 1)
        vol = float(cur["volume"][0]) * (second + 1) / 60.0
        o = float(path[0])
        hi, lo = float(path.max()), float(path.min())
        done = (open_ms // MINUTE_MS, minute)
        if done[1] > done[0]:
            prev = self._minutes(symbol, done[0], done[1])
            o = float(prev["open"][0])
            hi = max(hi, float(prev["high"].max()))
            lo = min(lo, float(prev["low"].min()))
            vol += float(prev["volume"].sum())
        return Candle(
            open_time_ms=open_ms, open=_quantise(o, prof.tick_size), high=_quantise(hi, prof.tick_size),
            low=_quantise(lo, prof.tick_size), close=_quantise(float(path[-1]), prof.tick_size),
            volume=_quantise(max(vol, float(prof.volume_step)), prof.volume_step),
        )


def _timeframe_ms(timeframe: str) -> int:
    try:
        return SUPPORTED_TIMEFRAMES[timeframe]
    except KeyError:
        supported = list(SUPPORTED_TIMEFRAMES)
        raise ValueError(f"unsupported timeframe {timeframe!r}; supported: {supported}") from None


def _quantise(value: float, step: Decimal) -> Decimal:
    """``value`` rounded to a multiple of ``step`` (half-even, like ``np.rint``), exactly."""
    units = round(value / float(step))
    return Decimal(units).scaleb(int(step.as_tuple().exponent))


def _to_source_candles(arr: CandleArrays, prof: SymbolProfile) -> list[Candle]:
    # Integer multiples of the step -> Decimal by scaling: exact, and fast enough for
    # thousands of candles (no float -> str -> Decimal round trip).
    t_exp = int(prof.tick_size.as_tuple().exponent)
    v_exp = int(prof.volume_step.as_tuple().exponent)
    tick, vstep = float(prof.tick_size), float(prof.volume_step)
    cols = [
        np.rint(getattr(arr, f) / tick).astype(np.int64).tolist() for f in ("open", "high", "low", "close")
    ]
    vols = np.rint(arr.volume / vstep).astype(np.int64).tolist()
    times = arr.open_time_ms.tolist()
    return [
        Candle(
            open_time_ms=t, open=Decimal(o).scaleb(t_exp), high=Decimal(h).scaleb(t_exp),
            low=Decimal(lo).scaleb(t_exp), close=Decimal(c).scaleb(t_exp), volume=Decimal(v).scaleb(v_exp),
        )
        for t, o, h, lo, c, v in zip(times, *cols, vols, strict=True)
    ]


# --- module-level helpers (one default market) ------------------------------------------------

@lru_cache(maxsize=64)
def _market(seed: int) -> SyntheticMarket:
    return SyntheticMarket(seed)


def fetch_closed_candles(
    symbol: str, timeframe: str, since_ms: int | None, limit: int, now_ms: int, *, seed: int = DEFAULT_SEED,
) -> list[Candle]:
    """``SyntheticMarket(seed).fetch_closed_candles(...)``."""
    market = _market(seed)
    return market.fetch_closed_candles(symbol, timeframe, since_ms=since_ms, limit=limit, now_ms=now_ms)


def price_at(symbol: str, t_ms: int, *, seed: int = DEFAULT_SEED) -> Decimal:
    """``SyntheticMarket(seed).price_at(...)``."""
    return _market(seed).price_at(symbol, t_ms)


def forming_candle(symbol: str, timeframe: str, now_ms: int, *, seed: int = DEFAULT_SEED) -> Candle:
    """``SyntheticMarket(seed).forming_candle(...)``."""
    return _market(seed).forming_candle(symbol, timeframe, now_ms)
