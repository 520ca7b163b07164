from django.contrib.auth import views as auth_views
from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.index, name="index"),
    path("login/", auth_views.LoginView.as_view(template_name="dashboard/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="dashboard:login"), name="logout"),
    path("fragment/<str:name>", views.fragment, name="fragment"),
    path("charts.json", views.chart_data, name="charts"),
    path("halt", views.halt, name="halt"),
    path("resume", views.resume, name="resume"),
    path("emergency-exit", views.emergency_exit, name="emergency-exit"),
    path("emergency-exit/<str:trace_id>", views.emergency_exit_report_view, name="emergency-exit-report"),
    path("backtests/", views.backtests, name="backtests"),
    path("backtests/<int:run_id>/", views.backtest, name="backtest"),
]
