"""How a stage sends a message to an actor: by the actor's name, through the broker.

The actors are declared in ``rest_hooks.tasks``, which imports the stages to run them; a
stage that imported the actors back would close an import circle. A Dramatiq message is
an actor's name, its queue and its arguments, so a stage needs no more than the name:
the broker knows the actor ``tasks`` declared under it.

Messages carry ids only (and, for a delivery the rate limit holds back, the time of the
slot it reserved): no payload, no target, no secret.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import dramatiq

logger = logging.getLogger(__name__)

#: The actors' names (``rest_hooks.tasks`` declares them under these).
DISPATCH = "rest_hooks.dispatch"
DELIVER = "rest_hooks.deliver"
RELAY = "rest_hooks.relay"


def send_each(
    actor_name: str,
    ids: Iterable[Any],
    what: str,
    delay: float = 0,
    kwargs: dict[str, Any] | None = None,
) -> None:
    """Enqueue one message per id, stopping (with one log line) if the broker fails."""
    actor = dramatiq.get_broker().get_actor(actor_name)
    for object_id in ids:
        try:
            actor.send_with_options(
                args=(object_id,), kwargs=kwargs, delay=int(delay * 1000) or None
            )
        except Exception:
            logger.exception(
                "Could not enqueue %s %s (broker unreachable?); the relay will enqueue it "
                "and the rest later.",
                what,
                object_id,
                extra={f"{what}_id": object_id},
            )
            return
