from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", include("rest_hooks.metrics.urls")),
    path("api/", include("rest_hooks.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
]
