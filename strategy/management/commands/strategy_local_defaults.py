"""``python manage.py strategy_local_defaults`` - the local run's strategy settings, applied once.

``make run`` trades the offline synthetic market, which gives B-lite about six entry signals an
hour on 1-minute candles (and very few on the production default of 15 minutes). On a database
where nobody has chosen a timeframe yet, this sets ``timeframe = 1m`` through the audited
``config_update`` (actor ``devstack``); once a ``timeframe`` row exists - from this command or
from an operator - it changes nothing, so an operator's choice survives restarts.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

LOCAL_DEFAULTS = {"timeframe": "1m"}


class Command(BaseCommand):
    help = "Apply the local run's strategy config (1m candles) once, on a database without a chosen timeframe."

    def handle(self, *args, **options) -> None:
        from infra.logging import new_trace_id
        from trading.config_schema import stored_rows
        from trading.services.control import config_update

        present = stored_rows()
        changes = {k: v for k, v in LOCAL_DEFAULTS.items() if k not in present}
        if not changes:
            self.stdout.write("strategy_local_defaults: config already chosen; nothing changed")
            return
        result = config_update(changes=changes, actor="devstack", source="system", reason_code="LOCAL_DEFAULTS",
                               reason="make run trades the synthetic market on 1m candles (~6 entries/hour)",
                               trace_id=new_trace_id())
        self.stdout.write(f"strategy_local_defaults: set {', '.join(f'{k}={v}' for k, v in changes.items())} "
                          f"(config version {result.version})")
