"""``path("api/", include("rest_hooks.api.urls"))``: the subscription API.

Route names (for ``reverse``): ``hook-list``, ``hook-detail``, ``hook-rotate-secret``,
``hook-ping``, ``hook-recover``, ``hook-keys``, ``hook-sample``; ``delivery-list``,
``delivery-detail``, ``delivery-redeliver`` (with the hook's id, then the delivery's).
"""

from rest_framework.routers import SimpleRouter

from rest_hooks.api.views import DeliveryViewSet, HookViewSet

router = SimpleRouter()
router.register("hooks", HookViewSet, basename="hook")
router.register(r"hooks/(?P<hook_pk>[^/.]+)/deliveries", DeliveryViewSet, basename="delivery")

urlpatterns = router.urls
