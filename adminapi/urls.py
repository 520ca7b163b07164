from django.urls import path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.permissions import AllowAny

from adminapi import views

urlpatterns = [
    # The schema describes the API and holds no data, so it is readable without a token.
    path("schema", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[AllowAny]),
         name="admin-schema"),
    path("halt", views.HaltView.as_view(), name="admin-halt"),
    path("resume", views.ResumeView.as_view(), name="admin-resume"),
    path("emergency_exit", views.EmergencyExitView.as_view(), name="admin-emergency-exit"),
    path("emergency_exit/<str:trace_id>", views.EmergencyExitReportView.as_view(), name="admin-emergency-exit-report"),
    path("update_config", views.UpdateConfigView.as_view(), name="admin-update-config"),
    path("status", views.StatusView.as_view(), name="admin-status"),
    path("config", views.ConfigView.as_view(), name="admin-config"),
    path("orders", views.OrdersView.as_view(), name="admin-orders"),
    path("orders/<str:client_order_id>/events", views.OrderEventsView.as_view(), name="admin-order-events"),
    path("decisions", views.DecisionsView.as_view(), name="admin-decisions"),
    path("audit", views.AuditView.as_view(), name="admin-audit"),
    path("positions", views.PositionsView.as_view(), name="admin-positions"),
    path("pnl", views.PnlView.as_view(), name="admin-pnl"),
    path("equity", views.EquityView.as_view(), name="admin-equity"),
    path("backtests", views.BacktestsView.as_view(), name="admin-backtests"),
    path("backtests/<str:run_id>", views.BacktestDetailView.as_view(), name="admin-backtest"),
]
