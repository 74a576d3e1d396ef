"""What a worker does with an event, one module a stage.

The Dramatiq actors (``rest_hooks.tasks``) are thin: each hands its message to a stage
here. In the order an event goes through them:

- ``fanout``: an event's matching hooks become deliveries, cut into batches;
- ``batch``: a batch is claimed, admitted by the gate, attempted, and what was not tried
  goes back;
- ``attempt``: one request, and the verdict on how it went;
- ``record``: the batch's results written at once, and what follows from them (retries,
  signals, a hook disabled, metrics, the log line);
- ``relay``: what the broker lost (or never got) is enqueued again.

Beneath them: ``tables`` (the plain SQL the stages run for every event and batch),
``gate`` (flow control as the worker sees it) and ``messages`` (how a stage sends a
message to an actor). A stage knows only those below it in this list, never the actors:
``tasks`` imports the stages, not the other way round.
"""
