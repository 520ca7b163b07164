"""OpenAPI description of the admin API's bearer-token auth (drf-spectacular extension)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "adminapi.auth.BearerTokenAuthentication"
    name = "AdminToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <ADMIN_TOKEN>"}
