from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from infra import views as infra_views

admin.site.site_header = "AlphaSniper operations"
admin.site.site_title = "AlphaSniper"
admin.site.site_url = "/dashboard/"      # the admin's "View site" opens the operator dashboard

urlpatterns = [
    path("health", infra_views.health, name="health"),
    path("health/live", infra_views.live, name="health-live"),
    path("metrics", infra_views.metrics, name="metrics"),
    path("admin/", include("adminapi.urls")),
    path("django-admin/", admin.site.urls),
    path("dashboard/", include("dashboard.urls")),
    path("", RedirectView.as_view(pattern_name="dashboard:index", permanent=False)),
]
