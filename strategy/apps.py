from django.apps import AppConfig


class StrategyConfig(AppConfig):
    """Strategy ticks: pure decision code in ``engines/``, decision rows, risk gates, stop monitor."""

    name = "strategy"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Positions are a projection of their orders' fills: the order lifecycle announces new
        # fills and the strategy brings its positions up to date (trading never imports strategy).
        from strategy.services.positions import on_fills_recorded
        from trading.services.lifecycle import fills_recorded

        fills_recorded.connect(on_fills_recorded, dispatch_uid="strategy.positions.on_fills_recorded")
