"""Sockets that may connect to this machine only: what keeps the tests, and every process they start, offline.

``tests/conftest.py`` applies :func:`guarded` to each test and puts this folder first on ``PYTHONPATH``, so
that ``sitecustomize.py`` next to this file calls :func:`install` in every Python subprocess (torchrun and
its workers, the ``ssd-zoo`` CLI, ``python -c``). Only Python's ``socket.socket`` is guarded: C++ sockets
(gloo, the c10d store) are not, and torchrun's ``--standalone`` rendezvous stays on localhost anyway.
"""
from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Callable
from typing import Any

REFUSAL = "tests may only connect to 127.0.0.1/localhost, not {host!r}"


def is_loopback(host: object) -> bool:
    """True for ``"localhost"`` and loopback addresses (127.0.0.0/8, ``::1``, with or without a ``%zone``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:  # a host name: resolving it could already reach the network's DNS
        return False


def guarded(connect: Callable[..., Any]) -> Callable[..., Any]:
    """``connect`` (``socket.socket.connect`` or ``connect_ex``) that raises ConnectionRefusedError for any
    IPv4/IPv6 address but loopback. ``connect_ex`` raises too, rather than return an error code: a test that
    tries the network should say so, not look like a closed port."""

    @functools.wraps(connect)
    def loopback_only(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
            if not is_loopback(address[0]):
                raise ConnectionRefusedError(REFUSAL.format(host=address[0]))
        return connect(self, address)

    return loopback_only


def install() -> None:
    """Guard ``socket.socket.connect`` and ``connect_ex`` for the rest of this process."""
    socket.socket.connect = guarded(socket.socket.connect)  # type: ignore[method-assign]
    socket.socket.connect_ex = guarded(socket.socket.connect_ex)  # type: ignore[method-assign]
