"""The subscription API: subscribers manage their own hooks over REST.

An optional extra (``pip install "rest-hooks-dramatiq[api]"``, Django REST framework and
drf-spectacular), mounted with ``path("api/", include("rest_hooks.api.urls"))``. Every
endpoint is scoped to the requesting user: another user's hook is a 404, whoever asks,
staff included (the admin is where staff see every hook). A hook's secret is in the
response that created it and in the one that rotated it, never in a later one.
"""
