from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # Loopback clients only, unless REST_HOOKS sets METRICS_TOKEN or METRICS_ALLOWED_NETWORKS.
    path("metrics", include("rest_hooks.metrics.urls")),
]
