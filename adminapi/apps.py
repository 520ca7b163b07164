from django.apps import AppConfig


class AdminApiConfig(AppConfig):
    """The operator surface: DRF /admin API, Django admin, the tbot CLI. No decisions live here:
    every write calls a service in ``trading.services``."""

    name = "adminapi"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from adminapi import schema  # noqa: F401  (registers the OpenAPI auth extension)
