#!/usr/bin/env python
"""The bookstore of django-rest-hooks' README, as a project: `python example/manage.py ...`."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bookstore_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
