"""``path("api/", include("rest_hooks.api.urls"))``: the subscription API.

Route names (for ``reverse``): ``hook-list``, ``hook-detail``, ``hook-rotate-secret``.
"""

from rest_framework.routers import SimpleRouter

from rest_hooks.api.views import HookViewSet

router = SimpleRouter()
router.register("hooks", HookViewSet, basename="hook")

urlpatterns = router.urls
