from django.urls import path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.permissions import AllowAny

urlpatterns = [
    # The schema describes the API and holds no data, so it is readable without a token.
    path("schema", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[AllowAny]),
         name="admin-schema"),
]
