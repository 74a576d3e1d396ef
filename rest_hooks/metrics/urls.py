"""Mount with ``path("metrics", include("rest_hooks.metrics.urls"))``: ``/metrics``."""

from django.urls import path

from rest_hooks.metrics import views

urlpatterns = [path("", views.metrics, name="rest_hooks_metrics")]
