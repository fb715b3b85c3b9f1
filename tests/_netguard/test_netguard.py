"""The no-network guard holds in the test process and in every Python subprocess a test starts, and loopback
connections (a local HTTP server, torchrun's rendezvous) still work."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest

UNROUTABLE = ("10.255.255.1", 80)  # a private address nothing answers: without the guard, a 1 s timeout


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """``python -c code`` as tests start it: the environment inherited, nothing added."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("code", [
    f"import socket; socket.create_connection({UNROUTABLE!r}, timeout=1)",
    f"import socket; socket.socket().connect_ex({UNROUTABLE!r})",
])
def test_subprocess_is_refused_the_network(code: str) -> None:
    done = run_python(code)
    assert done.returncode != 0, done.stdout + done.stderr
    expected = "ConnectionRefusedError: tests may only connect to 127.0.0.1/localhost, not '10.255.255.1'"
    assert expected in done.stderr.splitlines()[-1], done.stderr[-2000:]


def test_subprocess_reaches_loopback() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:  # the kernel queues connections; no accept needed
        port = server.getsockname()[1]
        code = (f"import socket\nfor host in ('127.0.0.1', 'localhost'):\n"
                f"    socket.create_connection((host, {port}), timeout=5).close()\n"
                f"print(socket.socket().connect_ex(('127.0.0.1', {port})))")
        done = run_python(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "0"


def test_this_process_is_refused_the_network() -> None:
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError, match="not '10.255.255.1'"):
        sock.connect(UNROUTABLE)
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError, match="not '10.255.255.1'"):
        sock.connect_ex(UNROUTABLE)
