from django.apps import AppConfig


class SyncerConfig(AppConfig):
    """Market data and account state from the venue into PostgreSQL."""

    name = "syncer"
    default_auto_field = "django.db.models.BigAutoField"
