from django.apps import AppConfig


class InfraConfig(AppConfig):
    """Cross-cutting infrastructure: clock, Redis, locks, logging, heartbeats, health, metrics, Telegram."""

    name = "infra"
    default_auto_field = "django.db.models.BigAutoField"
