import socket

import pytest

from tests.conftest import NetworkBlocked


def test_non_loopback_connect_is_refused():
    with socket.socket() as s, pytest.raises(NetworkBlocked):
        s.connect(("192.0.2.1", 443))


def test_hub_name_resolution_is_refused():
    with pytest.raises(NetworkBlocked):
        socket.getaddrinfo("huggingface.co", 443)


def test_loopback_is_allowed():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.socket() as client:
            client.connect(server.getsockname())
