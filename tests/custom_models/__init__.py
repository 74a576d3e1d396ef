"""A project's own user and hook models, as django-rest-hooks allowed (tests/settings_custom)."""
