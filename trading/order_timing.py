"""How long the steps of the order path may take: one table, read by the services that decide
and by the Celery tasks whose time limits must agree with them. No Django imports here, so the
task module can read it at import time.

* ``SEND_HARD_LIMIT_S`` — the submit task's hard time limit.
* ``STALE_SUBMITTED`` — a "submitted" order whose claim is older than this (database time) was
  orphaned by a crash: no live send is ever that old. One venue call lasts at most the rate
  limiter's wait plus ccxt's timeout (10 + 10 s); a send is at most three (Bybit's pre-check of
  a stop, the create, the read-back of a market order), wherever it runs (the submit task, the
  emergency exit task), so 60 s, with room to spare.
  ``ORDER_STALE_SUBMITTED_S`` overrides it: only a test that has killed every sender may lower it
  (the crash matrix scales time down this way); below the longest send it would let the
  sweeper re-send an order still in flight.
* ``RESEND_GRACE`` — how long after an unknown outcome a venue may still show the order (late
  visibility, Binance -1007); nothing is re-sent before it has passed.
* ``STALE_PENDING`` — a pending order older than this lost its submit task (broker down at
  commit, a crash) and is re-enqueued by the sweeper.
* ``MAX_SUBMIT_ATTEMPTS`` — sends before an operator is alerted; entries stop re-sending there,
  exits go on.
"""

from __future__ import annotations

import os
from datetime import timedelta

SEND_HARD_LIMIT_S = 3 * 20 + 10
VENUE_CALL_MAX_S = 20
STALE_SUBMITTED = timedelta(seconds=float(os.environ.get("ORDER_STALE_SUBMITTED_S", 3 * VENUE_CALL_MAX_S + 30)))
RESEND_GRACE = timedelta(seconds=float(os.environ.get("ORDER_RESEND_GRACE_S", "60")))
STALE_PENDING = timedelta(seconds=10)
MAX_SUBMIT_ATTEMPTS = 5
