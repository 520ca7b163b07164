"""Every API error is JSON: ``{"error": <code>, "detail": <text>, "fields": {field: [problems]}}``.

Two layers make that hold for *every* answer under ``/admin/``:

* ``exception_handler`` (DRF) shapes the errors raised inside an API view, including a body
  over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (Django raises that while DRF reads the body; left to
  Django it became an HTML 400 with an ERROR traceback in the log).
* ``AdminJsonErrorsMiddleware`` catches what never reaches a view or escapes one: an unknown
  path (Django's HTML 404), an unhandled exception (Django's HTML 500), and any other HTML
  error page some middleware answers with.
"""

from __future__ import annotations

import json
import logging

from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from infra.logging import current_trace_id

logger = logging.getLogger(__name__)
ADMIN_PREFIX = "/admin/"


def _too_big_detail() -> str:
    from django.conf import settings

    return f"request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"


class UniverseNotTradableError(exceptions.APIException):
    """409: the universe is well-formed, but the venue or the account cannot trade it. A conflict
    with the venue's state, not a malformed request: the same body may succeed once the venue
    lists the symbol or the account holds the quote (and the schema cannot know either)."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "universe_not_tradable"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("the venue or the account cannot trade this universe; nothing was changed")
        self.fields = {"changes": {"universe": problems}}


class VenueUnavailableError(exceptions.APIException):
    """503: a change that needs the venue's answer could not get it; nothing was changed."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "venue_unavailable"


def exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        # Not a bug and not an attack worth a traceback: the client sent too much.
        return Response({"error": "request_too_large", "detail": _too_big_detail()},
                        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real bug: AdminJsonErrorsMiddleware logs it and answers a JSON 500
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = {"error": "invalid_request", "detail": "request validation failed", "fields": fields}
        response.status_code = status.HTTP_400_BAD_REQUEST
    else:
        code = getattr(exc, "default_code", "error")
        detail = exc.detail if isinstance(getattr(exc, "detail", None), str) else str(getattr(exc, "detail", exc))
        response.data = {"error": code, "detail": detail}
        if getattr(exc, "fields", None):
            response.data["fields"] = exc.fields
    return response


def _is_admin(path: str) -> bool:
    return path == ADMIN_PREFIX.rstrip("/") or path.startswith(ADMIN_PREFIX)


def _is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").startswith("application/json")


_CODES = {400: "bad_request", 403: "permission_denied", 404: "not_found", 405: "method_not_allowed",
          413: "request_too_large", 500: "server_error"}


def json_error(status_code: int, detail: str, *, error: str | None = None) -> JsonResponse:
    return JsonResponse({"error": error or _CODES.get(status_code, "error"), "detail": detail}, status=status_code)


class AdminJsonErrorsMiddleware:
    """Under ``/admin/``: unhandled exceptions become a logged JSON 500 naming the trace id, and
    any error answer that is not JSON is replaced by a JSON one with the same status."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not _is_admin(request.path) or response.status_code < 400 or _is_json(response):
            return response
        if response.status_code == 404:
            detail = (f"no such endpoint: {request.method} {json.dumps(request.path)[1:-1]} "
                      "(the endpoints are listed in GET /admin/schema)")
        else:
            detail = response.reason_phrase or "error"
        replaced = json_error(response.status_code, detail)
        for header in ("X-Trace-Id", "WWW-Authenticate", "Allow"):
            if header in response:
                replaced[header] = response[header]
        return replaced

    def process_exception(self, request, exc):
        if not _is_admin(request.path):
            return None
        if isinstance(exc, RequestDataTooBig):
            return json_error(413, _too_big_detail())
        trace_id = current_trace_id() or "-"
        # Django logs an exception only when it builds the 500 itself; we build it, so we log.
        logger.error("unhandled error on %s %s", request.method, request.path, exc_info=exc,
                     extra={"status_code": 500})
        return json_error(500, f"internal error (trace_id {trace_id}); it is logged with that id")
