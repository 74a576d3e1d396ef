"""The demo (`scripts/demo`) keeps working: its command, against real worker processes.

`manage.py bookstore_demo` is run as scripts/demo runs it, with two `rundramatiq` worker
processes on the suite's redis-server delivering to the receiver the command starts.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def test_bookstore_demo_gets_every_delivery_signed(start_workers):
    start_workers(processes=2, threads=4)
    out = io.StringIO()

    call_command("bookstore_demo", "--timeout", "30", stdout=out)

    output = out.getvalue()
    lines = output.splitlines()
    assert "All 5 deliveries arrived" in output, output
    assert sum("signature verified" in line for line in lines) == 5, output
    assert not [line for line in lines if "REJECTED" in line], output
