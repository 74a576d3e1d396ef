from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", include("rest_hooks.metrics.urls")),
    path("api/", include("rest_hooks.api.urls")),
]
