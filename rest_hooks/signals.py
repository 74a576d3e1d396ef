"""Public signals. The first three keep the names and arguments of django-rest-hooks 1.5.

- ``hook_event(sender, action, instance, user=None)``: fire a custom (or built-in) action
  of a model, routed through ``HOOK_EVENTS`` like ``created``/``updated``/``deleted``.
- ``raw_hook_event(sender, event_name, payload, user, send_hook_meta=True)``: fire an
  event with a payload of your own.
- ``hook_sent_event(sender, payload, instance, hook, delivery)``: sent by a worker once a
  delivery has succeeded. ``instance`` is the model instance re-read from the database
  (``None`` when it is gone or the event was raw).
- ``hook_disabled(sender, hook, reason)``: a hook was switched off (410 Gone, or failing
  for longer than ``REST_HOOKS["DISABLE_AFTER"]``).
- ``hook_failing(sender, hook, percent, failing_since, disable_at)``: a hook's deliveries
  have failed since ``failing_since`` for ``percent`` of ``DISABLE_AFTER`` (a stage of
  ``REST_HOOKS["NOTICE_AT"]``); it is disabled at ``disable_at`` unless one succeeds. Once
  per stage and run of failures.
- ``breaker_changed(sender=None, origin, state)``: a target's circuit breaker went to
  ``"open"``, ``"half_open"`` or ``"closed"``.
- ``hook_delivery_requested(sender, hook, instance, payload_override)``: sent by
  ``Hook.deliver_hook`` (the call of django-rest-hooks' ``HOOK_FINDER`` functions);
  rest_hooks captures the event in its receiver (``rest_hooks.events``), so that the
  models, which the capture uses, import nothing of it.
"""

from django.dispatch import Signal

hook_event = Signal()
raw_hook_event = Signal()
hook_sent_event = Signal()
hook_disabled = Signal()
hook_failing = Signal()
breaker_changed = Signal()
hook_delivery_requested = Signal()
