"""How a stage sends a message to an actor: by the actor's name, through the broker.

The actors are declared in ``rest_hooks.tasks``, which imports the stages to run them; a
stage that imported the actors back would close an import circle. A Dramatiq message is
an actor's name, its queue and its arguments, so a stage needs no more than the name:
the broker knows the actor ``tasks`` declared under it.

Messages carry ids only (and, for a batch, how many of its deliveries it may send at once
and the time of the rate slot it reserved): no payload, no target, no secret.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, NamedTuple

import dramatiq

logger = logging.getLogger(__name__)

#: The actors' names (``rest_hooks.tasks`` declares them under these).
DISPATCH = "rest_hooks.dispatch"
DELIVER = "rest_hooks.deliver"
RELAY = "rest_hooks.relay"
NOTIFY = "rest_hooks.notify"


class Batch(NamedTuple):
    """What one ``deliver`` message carries: its deliveries, and how many of them it may
    send at once (its *lanes*, ``plan_batches``)."""

    ids: list[str]
    lanes: int = 1


def send_each(actor_name: str, ids: Iterable[Any], what: str) -> None:
    """Enqueue one message per id, stopping (with one log line) if the broker fails."""
    _send(actor_name, (((object_id,), None) for object_id in ids), what, 0)


def send_batches(
    batches: Iterable[Batch], delay: float = 0, reservation: float | None = None
) -> None:
    """Enqueue one ``deliver`` message per batch (after ``delay`` seconds), as
    ``send_each`` does; ``reservation``: the rate slot the batch booked."""

    def options(batch: Batch) -> dict[str, Any] | None:
        kwargs: dict[str, Any] = {}
        if batch.lanes > 1:
            kwargs["lanes"] = batch.lanes
        if reservation is not None:
            kwargs["reservation"] = reservation
        return kwargs or None

    _send(DELIVER, (((b.ids,), options(b)) for b in batches), "delivery", delay)


def _send(
    actor_name: str,
    messages: Iterable[tuple[tuple[Any, ...], dict[str, Any] | None]],
    what: str,
    delay: float,
) -> None:
    actor = dramatiq.get_broker().get_actor(actor_name)
    for args, kwargs in messages:
        try:
            actor.send_with_options(args=args, kwargs=kwargs, delay=int(delay * 1000) or None)
        except Exception:
            logger.exception(
                "Could not enqueue %s %s (broker unreachable?); the relay will enqueue it "
                "and the rest later.",
                what,
                args[0],
                extra={f"{what}_id": args[0]},
            )
            return
