"""Start the product's console scripts as real processes for tests, and stop them by pid."""

from __future__ import annotations

import asyncio
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def script(name: str) -> str:
    """Path of an installed console script of this project (in the test's virtual environment)."""
    path = BIN / name
    if not path.exists():
        raise FileNotFoundError(f"console script {name} is not installed in {BIN}")
    return str(path)


class Process:
    """A child process whose stdout lines can be read with a timeout and whose stderr goes to a file."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, cwd: str | Path | None = None) -> None:
        self.argv = argv
        self._stderr = tempfile.NamedTemporaryFile(prefix="proc-", suffix=".log", delete=False)
        full_env = dict(os.environ)
        full_env["PYTHONUNBUFFERED"] = "1"
        if env:
            full_env.update(env)
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=full_env,
            cwd=str(cwd or REPO),
            start_new_session=True,
        )
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def readline(self, timeout: float = 20.0) -> str:
        """The next stdout line (without newline); raises TimeoutError with the process's stderr."""
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.popen.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise TimeoutError(f"no line from {self.argv[0]} within {timeout}s; stderr:\n{self.stderr()}")
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise EOFError(f"{self.argv[0]} closed stdout (exit {self.popen.poll()}); stderr:\n{self.stderr()}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def stderr(self) -> str:
        return Path(self._stderr.name).read_text(errors="replace")

    async def stderr_line(self, pattern: str, timeout: float = 5.0) -> str:
        """The first stderr line that matches the regular expression ``pattern``; raises AssertionError after
        ``timeout`` seconds. Polls while the event loop runs: a server logs a request after it answered it."""
        regex = re.compile(pattern)
        for _ in range(int(timeout / 0.05)):
            for line in self.stderr().splitlines():
                if regex.search(line):
                    return line
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"no stderr line of {Path(self.argv[0]).name} matches {pattern!r}:\n{self.stderr()[-2000:]}"
        )

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(5)
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                stream.close()
        self._stderr.close()
        return self.popen.returncode
