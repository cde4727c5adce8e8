"""Fixtures of the studio's tests: loopback connections allowed (the session guard refuses every socket) and a
studio server on a free loopback port, one per test module."""

from __future__ import annotations

import _socket
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from studio_server import TEST_LIMITS, Server, start_server, stop_server

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _loopback(address: Any) -> bool:
    return isinstance(address, tuple) and str(address[0]) in LOOPBACK_HOSTS


@pytest.fixture
def loopback(_network_guard: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Let this test connect to 127.0.0.1 (its own server); every other address stays refused."""
    guarded_connect, guarded_lookup, guarded_create = (
        socket.socket.connect,
        socket.getaddrinfo,
        socket.create_connection,
    )

    def connect(self: socket.socket, address: Any) -> None:
        if _loopback(address):
            return _socket.socket.connect(self, address)
        return guarded_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if str(host) in LOOPBACK_HOSTS:
            return _socket.getaddrinfo(host, *args, **kwargs)
        return guarded_lookup(host, *args, **kwargs)

    def create_connection(address: Any, timeout: Any = None, source_address: Any = None, **kwargs: Any) -> Any:
        if not _loopback(address):
            return guarded_create(address, timeout, source_address, **kwargs)
        sock = socket.socket(socket.AF_INET6 if ":" in str(address[0]) else socket.AF_INET, socket.SOCK_STREAM)
        if isinstance(timeout, (int, float)):  # else None or socket's "default" sentinel
            sock.settimeout(timeout)
        sock.connect(("127.0.0.1" if address[0] == "localhost" else address[0], address[1]))
        return sock

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("studio"), *TEST_LIMITS)
    yield server
    stop_server(server)
