"""The ``/metrics`` view: every process's metrics in Prometheus' text format."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache

from rest_hooks.metrics import access, exposition


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Serve the metrics to an allowed client; anyone else gets an empty 403."""
    if not access.allowed(request):
        return HttpResponse(status=403)
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    body, content_type = exposition.render(request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)
