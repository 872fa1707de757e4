"""Fixtures of the host tests: the head-end's store on each backend (SQLite and a real PostgreSQL)."""

import itertools

import pytest

BACKENDS = ("sqlite", "postgresql")
_names = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server():
    from tools.pgserver import PgServer, PgServerError

    try:
        server = PgServer()
    except PgServerError as e:
        pytest.fail("PostgreSQL could not start: %s" % e, pytrace=False)
    yield server
    server.close()


class SqliteBackend:
    name = "sqlite"

    def target(self, path):
        return str(path)

    def open(self, path, **kw):
        from tools.headend.store import Store

        return Store(path, **kw)


class PgBackend:
    """Each distinct path gets its own fresh schema; opening the same path again reaches the same data."""

    name = "postgresql"

    def __init__(self, server):
        self.server = server
        self.dsns = {}

    def target(self, path):
        key = str(path)
        if key not in self.dsns:
            self.dsns[key] = self.server.new_schema("t%d" % next(_names))
        return self.dsns[key]

    def open(self, path, **kw):
        from tools.headend.pgstore import PgStore

        return PgStore(self.target(path), **kw)


@pytest.fixture(params=BACKENDS, scope="module")
def backend(request):
    """The store's backend: every test using it runs on SQLite and on PostgreSQL (grouped per module)."""
    if request.param == "sqlite":
        return SqliteBackend()
    return PgBackend(request.getfixturevalue("pg_server"))
