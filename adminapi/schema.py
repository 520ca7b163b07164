"""OpenAPI description of the admin API's bearer-token auth (drf-spectacular extension)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "adminapi.auth.BearerTokenAuthentication"
    name = "AdminToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <ADMIN_TOKEN>"}


def request_bodies_are_closed(result, generator, request, public):
    """drf-spectacular postprocessing hook: every request body object takes only its own fields.

    The API refuses an unknown field (``adminapi.serializers.StrictSerializer``); the schema says
    so with ``additionalProperties: false``, so clients and fuzzers know it too."""
    schemas = result.get("components", {}).get("schemas", {})
    for path in result.get("paths", {}).values():
        for operation in path.values():
            content = (operation.get("requestBody") or {}).get("content", {})
            for media in content.values():
                ref = media.get("schema", {}).get("$ref", "")
                component = schemas.get(ref.rsplit("/", 1)[-1]) if ref.startswith("#/components/schemas/") else None
                if component is not None and component.get("type") == "object":
                    component["additionalProperties"] = False
    return result
