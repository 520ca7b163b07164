from django.contrib import admin
from django.urls import include, path

from infra import views as infra_views

admin.site.site_header = "AlphaSniper operations"
admin.site.site_title = "AlphaSniper"

urlpatterns = [
    path("health", infra_views.health, name="health"),
    path("health/live", infra_views.live, name="health-live"),
    path("metrics", infra_views.metrics, name="metrics"),
    path("admin/", include("adminapi.urls")),
    path("django-admin/", admin.site.urls),
]
