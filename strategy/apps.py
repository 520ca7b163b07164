from django.apps import AppConfig


class StrategyConfig(AppConfig):
    """Strategy ticks: pure decision code in ``engines/``, decision rows, risk gates, stop monitor."""

    name = "strategy"
    default_auto_field = "django.db.models.BigAutoField"
