from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from infra import metrics as metrics_registry
from infra.health import check_health


@require_GET
def health(request):
    """200 when every component and process is fine; 503 naming what is down or stale."""
    healthy, report = check_health()
    return JsonResponse(report, status=200 if healthy else 503)


@require_GET
def metrics(request):
    return HttpResponse(metrics_registry.render(), content_type=CONTENT_TYPE_LATEST)


@require_GET
def live(request):
    """Liveness of this API process only (container healthcheck); /health is the whole system."""
    return JsonResponse({"status": "ok"})
