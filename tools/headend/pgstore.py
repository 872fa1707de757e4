"""The head-end's store on PostgreSQL (psycopg 3): the same schema and SQL as the SQLite store, adapted.

`open_store(target)` opens a PostgreSQL store when `target` is a DSN (`postgresql://...` or `postgres://...`)
and the SQLite store otherwise. The SQL of store.py and the readers is the dialect both share; this module
turns `?` into `%s` and, in CREATE TABLE, SQLite's types into PostgreSQL's: REAL -> DOUBLE PRECISION,
INTEGER -> BIGINT, `id INTEGER PRIMARY KEY` -> BIGSERIAL, BLOB -> BYTEA; `readings` gets an explicit
`rowid` (arrival order, which SQLite gives every table). The schema version is kept in table `meta`; the
schema is created (or migrated), and every write transaction runs, under one advisory lock, so several
workers can start at once and write without deadlocks.
"""

import re
import threading
from contextlib import contextmanager

from tools.headend import schema
from tools.headend.store import Store

DSN_PREFIXES = ("postgresql://", "postgres://")
_WRITE_LOCK_ID = 0x6264_6d74  # "bdmt": the advisory lock every write transaction takes (schema creation too)
# PostgreSQL migrations: version -> statements bringing the schema from version - 1 to it
MIGRATIONS = {}


def is_dsn(target):
    return isinstance(target, str) and target.startswith(DSN_PREFIXES)


def open_store(target, **kw):
    """A Store for a file path or a PostgreSQL DSN."""
    return PgStore(target, **kw) if is_dsn(target) else Store(target, **kw)


def ddl(statement):
    """A CREATE statement of the SQLite schema in PostgreSQL's types."""
    s = re.sub(r"\bWITHOUT ROWID\b", "", statement)
    s = re.sub(r"\b(\w+) INTEGER PRIMARY KEY\b", r"\1 BIGSERIAL PRIMARY KEY", s)
    s = re.sub(r"\bINTEGER\b", "BIGINT", s)
    s = re.sub(r"\bREAL\b", "DOUBLE PRECISION", s)
    s = re.sub(r"\bBLOB\b", "BYTEA", s)
    s = re.sub(r"(CREATE TABLE IF NOT EXISTS readings\()", r"\1rowid BIGSERIAL, ", s)
    return s


_CREATE = re.compile(r"^\s*CREATE\s+(TABLE|INDEX)", re.I)


def translate(sql, with_args=True):
    """One statement of the shared dialect for psycopg: placeholders, and types in CREATE statements."""
    if with_args:
        sql = sql.replace("%", "%%").replace("?", "%s")
    return ddl(sql) if _CREATE.match(sql) else sql


class Row(tuple):
    """A result row read by position or by column name, like sqlite3.Row (dict(row) works)."""

    __slots__ = ()
    _names = ()

    def __getitem__(self, k):
        if isinstance(k, str):
            try:
                return tuple.__getitem__(self, self._names.index(k))
            except ValueError:
                raise IndexError("no column %r" % k)
        return tuple.__getitem__(self, k)

    def keys(self):
        return list(self._names)


_ROW_TYPES = {}


def _row_factory(cursor):
    names = tuple(d.name for d in cursor.description or ())
    cls = _ROW_TYPES.get(names)
    if cls is None:
        cls = _ROW_TYPES[names] = type("Row", (Row,), {"_names": names})
    return cls


class _Cursor:
    def __init__(self, cur):
        self.cur = cur

    @property
    def rowcount(self):
        return self.cur.rowcount

    def fetchone(self):
        return self.cur.fetchone() if self.cur.description else None

    def fetchall(self):
        return self.cur.fetchall() if self.cur.description else []

    def __iter__(self):
        return iter(self.fetchall())


class _Conn:
    """The part of sqlite3.Connection the store uses: execute, executemany (the statement is translated)."""

    def __init__(self, conn):
        self.conn = conn

    def execute(self, sql, args=()):
        cur = self.conn.cursor(row_factory=_row_factory)
        args = tuple(args)
        cur.execute(translate(sql, bool(args)), args or None)
        return _Cursor(cur)

    def executemany(self, sql, seq):
        cur = self.conn.cursor()
        cur.executemany(translate(sql), [tuple(a) for a in seq])
        return _Cursor(cur)

    def close(self):
        self.conn.close()


class PgStore(Store):
    """One PostgreSQL connection shared by threads under a lock, with the SQLite store's methods."""

    GREATEST = "greatest"
    BACKEND = "postgresql"

    def __init__(self, dsn, timeout_s=10.0):
        import psycopg

        self.path = dsn
        self.lock = threading.RLock()
        try:
            raw = psycopg.connect(dsn, autocommit=True, connect_timeout=max(1, int(timeout_s)))
        except psycopg.OperationalError as e:
            # the message names host and port but never a password (it is not part of libpq's messages)
            raise OSError("PostgreSQL: cannot connect: %s" % str(e).strip().splitlines()[0])
        self.db = _Conn(raw)
        self.migrated = False
        with self.tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
            have = int(row[0]) if row else 0
            if have > schema.VERSION:
                raise OSError("PostgreSQL: the database has schema %d, newer than this head-end's %d"
                              % (have, schema.VERSION))
            if have < schema.VERSION:
                if have:
                    for v in range(have + 1, schema.VERSION + 1):
                        for s in MIGRATIONS.get(v, ()):
                            db.execute(s)
                for s in schema.statements():
                    db.execute(s)
                db.execute("INSERT INTO meta(name, value) VALUES('schema_version', ?) ON CONFLICT(name) DO UPDATE"
                           " SET value = excluded.value", (str(schema.VERSION),))
                self.migrated = bool(have)

    @contextmanager
    def tx(self):
        """A write transaction. Every writer first takes one transaction-level advisory lock, so concurrent
        workers' transactions queue (as SQLite's BEGIN IMMEDIATE makes them) instead of taking row locks in
        different orders (terminals, counters) and deadlocking, which would lose a whole batch."""
        with self.lock:
            self.db.execute("BEGIN")
            try:
                self.db.execute("SELECT pg_advisory_xact_lock(%d)" % _WRITE_LOCK_ID)
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
