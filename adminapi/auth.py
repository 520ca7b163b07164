"""Bearer-token auth for the /admin API: 401 without a token, 403 with a wrong one.

The token is compared in constant time. There are no users here: whoever holds ADMIN_TOKEN
is an operator, and every mutating call must still say who they are (``by``) and why.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission


class Operator:
    """The authenticated principal of an API call."""

    is_authenticated = True

    def __str__(self) -> str:
        return "operator"


class BearerTokenAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = request.headers.get("Authorization", "")
        if not header:
            return None  # -> 401 via authenticate_header
        scheme, _, token = header.partition(" ")
        if scheme != self.keyword or not token.strip():
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <ADMIN_TOKEN>'")
        expected = settings.ADMIN_TOKEN
        if not expected:
            raise exceptions.PermissionDenied("ADMIN_TOKEN is not configured on the server; the admin API is closed")
        if not hmac.compare_digest(token.strip().encode(), expected.encode()):
            raise exceptions.PermissionDenied("invalid admin token")
        return Operator(), token

    def authenticate_header(self, request) -> str:
        # Presence of this header makes DRF answer 401 (not 403) to unauthenticated calls.
        return 'Bearer realm="alphasniper-admin"'


class IsOperator(BasePermission):
    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, Operator)
