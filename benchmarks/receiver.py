"""The receivers both libraries deliver to: an nginx of our own answering 204 to every POST
at once, and ``slow_receiver.py``'s origins that answer late (``slow_receivers``).

Its own prefix, configuration, pid file and logs in a temporary directory, on a free
loopback port, in the foreground (``daemon off``) as our child: never the system service.
Each request is one line of the access log (``common.LOG_FORMAT``): arrival time, URI,
status. nginx answers in a few microseconds from one core, so the figures measure the
senders, not it. ``scripts/bench`` installs the Debian package ``nginx-light`` when
``nginx`` is missing.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from common import LOG_FORMAT, free_port, stop

CONFIG = """\
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format bench '{log_format}';
    access_log {prefix}/access.log bench;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ return 204; }}
    }}
}}
"""


@dataclass(frozen=True)
class Receiver:
    url: str  # http://127.0.0.1:PORT
    access_log: Path
    pid: int
    version: str


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        raise SystemExit("nginx is not installed: run scripts/bench (it installs nginx-light)")
    return found


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"nginx did not listen on port {port}")
        time.sleep(0.02)


@contextlib.contextmanager
def nginx() -> Iterator[Receiver]:
    binary = nginx_binary()
    version = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr.strip()
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as tmp:
        prefix = Path(tmp)
        prefix.chmod(0o755)  # its worker runs as nobody when we are root
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(CONFIG.format(prefix=prefix, port=port, log_format=LOG_FORMAT))
        proc = subprocess.Popen(
            [binary, "-p", str(prefix), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_listening(port, proc)
            yield Receiver(
                f"http://127.0.0.1:{port}",
                prefix / "access.log",
                proc.pid,
                version.removeprefix("nginx version: "),
            )
        except RuntimeError:
            error_log = prefix / "error.log"
            if error_log.exists():
                print(error_log.read_text())
            raise
        finally:
            stop(proc, signal.SIGQUIT)  # graceful: finish the requests in flight


@dataclass(frozen=True)
class SlowReceivers:
    """``slow_receiver.py``'s origins: the URLs of each group, and their shared log."""

    urls: dict[str, list[str]]
    access_log: Path


@contextlib.contextmanager
def slow_receivers(origins: str) -> Iterator[SlowReceivers]:
    """``slow_receiver.py --origins ORIGINS`` in a process of its own, until the block ends."""
    with tempfile.TemporaryDirectory(prefix="bench-slow-") as tmp:
        log = Path(tmp) / "access.log"
        log.touch()
        script = Path(__file__).resolve().parent / "slow_receiver.py"
        proc = subprocess.Popen(
            [sys.executable, str(script), "--log", str(log), "--origins", origins],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"slow_receiver.py did not start (exit {proc.wait()})")
            yield SlowReceivers(json.loads(line), log)
        finally:
            stop(proc)
