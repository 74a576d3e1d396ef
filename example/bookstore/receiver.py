"""A real HTTP receiver on 127.0.0.1 for the tests: records requests, answers as told."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float = field(default_factory=time.time)


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0


class Receiver:
    """Answers each request with the next queued ``Answer`` for its path, else ``default``.

    ``port``: 0 for any free one; a port a closed receiver had, to bring it back up.
    ``arrived`` counts the requests read so far, answered or not (an answer may wait).
    """

    def __init__(self, port: int = 0) -> None:
        self.requests: list[ReceivedRequest] = []
        self.arrived = 0
        self.default = Answer()
        self._answers: dict[str, deque[Answer]] = {}
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._cond:
                    receiver.arrived += 1
                answer = receiver._next_answer(self.path)
                if answer.delay:
                    time.sleep(answer.delay)
                with receiver._cond:
                    receiver.requests.append(
                        ReceivedRequest(
                            "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body
                        )
                    )
                    receiver._cond.notify_all()
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (or died) waiting

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, *answers: Answer) -> None:
        """Queue answers for the next requests to ``path``, in order."""
        with self._cond:
            self._answers.setdefault(path, deque()).extend(answers)

    def _next_answer(self, path: str) -> Answer:
        with self._cond:
            queue = self._answers.get(path)
            return queue.popleft() if queue else self.default

    def wait_for(self, count: int, timeout: float = 20.0) -> list[ReceivedRequest]:
        """Wait until ``count`` requests have arrived; fail the test if they don't."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"receiver got {len(self.requests)} requests, expected {count}"
                    )
                self._cond.wait(left)
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
