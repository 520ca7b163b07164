from django.apps import AppConfig


class TradingConfig(AppConfig):
    """Orders, their event stream, the venue gateway, system config and the audit log."""

    name = "trading"
    default_auto_field = "django.db.models.BigAutoField"
