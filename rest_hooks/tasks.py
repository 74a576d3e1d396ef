"""The Dramatiq actors: ``dispatch`` (fan-out), ``deliver`` (a batch of POSTs to one
target), the relay and ``notify`` (a notice to a hook's owner). django-dramatiq discovers
them here; what each does lives in ``rest_hooks.worker``, one module a stage.

Every actor is idempotent, because a message may arrive twice (a worker killed before it
acked, the relay re-sending an event whose first message was merely slow):

- ``dispatch`` advances a cursor on the event with a compare-and-set UPDATE, so one event is
  fanned out once; a unique constraint on (event, hook) backs that up.
- ``deliver`` claims its deliveries in a transaction that takes only rows still due and
  not locked by another worker, and sets a lease, so a delivery that succeeded, failed for
  good, or is in flight elsewhere is not sent again.

The stages send their messages by the actors' names (``rest_hooks.worker.messages``).
"""

from __future__ import annotations

from typing import Any

import dramatiq

from rest_hooks.broker import setup_broker
from rest_hooks.conf import hook_settings
from rest_hooks.worker.batch import deliver_batch
from rest_hooks.worker.fanout import fan_out
from rest_hooks.worker.handoff import HandOff
from rest_hooks.worker.messages import DELIVER, DISPATCH, NOTIFY, RELAY
from rest_hooks.worker.notices import send_notice
from rest_hooks.worker.relay import relay_pending

# Each worker process runs the relay in a thread of its own, besides the relay actor, and
# sends its batches' requests on its event loop.
_broker = setup_broker(relay=relay_pending, middleware=[HandOff()])


def _actor(fn: Any, actor_name: str, **options: Any) -> Any:
    """Declare an actor with only the options the broker's middleware understands.

    A broker without, say, the TimeLimit middleware would refuse the option at import; the
    system checks name the missing middleware instead (rest_hooks.E006).
    """
    supported = {k: v for k, v in options.items() if k in _broker.actor_options}
    return dramatiq.actor(
        actor_name=actor_name,
        broker=_broker,
        queue_name=hook_settings.QUEUE_NAME,
        **supported,
    )(fn)


# Actors return nothing: Dramatiq would warn about a result with no Results middleware.


def _dispatch(event_id: int) -> None:
    fan_out(event_id, deliver_here=True)


def _relay() -> None:
    relay_pending()


dispatch = _actor(_dispatch, DISPATCH, max_retries=10, min_backoff=1000)
deliver = _actor(deliver_batch, DELIVER, max_retries=3, min_backoff=1000)
relay = _actor(_relay, RELAY, max_retries=0)
# A notice's e-mail and operational webhook: retried for about a day (Dramatiq's backoff).
notify = _actor(send_notice, NOTIFY, max_retries=16, min_backoff=5000, max_backoff=3_600_000)
