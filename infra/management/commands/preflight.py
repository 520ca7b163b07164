from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from infra.preflight import PreflightError, check_database, check_redis


class Command(BaseCommand):
    help = "Check that PostgreSQL, Redis and the broker answer; one clear line and exit 1 if not."

    def add_arguments(self, parser):
        parser.add_argument("--wait", type=float, default=0, help="keep trying for this many seconds")

    def handle(self, *args, wait: float, **options):
        try:
            pg = check_database(_db_url(), wait_s=wait)
            rd = check_redis(settings.REDIS_URL, wait_s=wait)
            if settings.CELERY_BROKER_URL != settings.REDIS_URL:
                check_redis(settings.CELERY_BROKER_URL, name="CELERY_BROKER_URL", wait_s=wait)
        except PreflightError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"preflight ok: PostgreSQL {pg}, Redis {rd}, venue {settings.VENUE.name}")


def _db_url() -> str:
    return settings.CONFIG.database_url
