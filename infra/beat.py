"""The beat scheduler: django-celery-beat's DatabaseScheduler plus a heartbeat for /health."""

from __future__ import annotations

import logging
import time

from django_celery_beat.schedulers import DatabaseScheduler

from infra import heartbeat

log = logging.getLogger(__name__)


class HeartbeatDatabaseScheduler(DatabaseScheduler):
    _last_beat = 0.0
    # Wake at least this often, so the heartbeat stays fresh between sparse schedule entries.
    max_interval = 5

    def tick(self, *args, **kwargs):
        now = time.monotonic()
        if now - self._last_beat >= 5:
            try:
                heartbeat.record("beat")
                self._last_beat = now
            except Exception as exc:  # Redis down: health reports it; beat keeps scheduling.
                log.warning("beat heartbeat not recorded: %s", exc)
        return super().tick(*args, **kwargs)
