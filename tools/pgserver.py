"""A throw-away PostgreSQL server for the tests and the benchmark: Debian's postgresql 15, initdb in a temporary
folder, on a free loopback port, run as a non-root user (the `postgres` account when run as root). When the
server cannot start, PgServerError says why."""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

BIN = "/usr/lib/postgresql/15/bin"


class PgServerError(RuntimeError):
    pass


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    def __init__(self, bin_dir=BIN, timeout_s=30.0):
        if not os.path.exists(os.path.join(bin_dir, "initdb")):
            raise PgServerError("PostgreSQL 15 is not installed (%s/initdb missing): run `make venv` as root "
                                "(tools/bootstrap.sh installs Debian's postgresql) or apt-get install postgresql"
                                % bin_dir)
        self.dir = tempfile.mkdtemp(prefix="bdmeter-pg-")
        self.port = _free_port()
        self.proc = None
        self.user = None
        prefix = []
        if os.geteuid() == 0:
            # initdb and postgres refuse to run as root: the postgres account (or nobody) owns the cluster
            for name in ("postgres", "nobody"):
                try:
                    pw = pwd.getpwnam(name)
                except KeyError:
                    continue
                self.user = name
                os.chown(self.dir, pw.pw_uid, pw.pw_gid)
                prefix = ["runuser", "-u", name, "--"]
                break
            else:
                raise PgServerError("running as root and neither a postgres nor a nobody account exists")
        data = os.path.join(self.dir, "data")
        p = subprocess.run(prefix + [os.path.join(bin_dir, "initdb"), "-D", data, "-U", "postgres", "--auth=trust",
                                     "--no-sync", "-E", "UTF8", "--locale=C"],
                           capture_output=True, text=True, timeout=120)
        if p.returncode:
            self.close()
            raise PgServerError("initdb failed (%d): %s" % (p.returncode, (p.stderr or p.stdout)[-1500:]))
        log = os.path.join(self.dir, "server.log")
        cmd = prefix + [os.path.join(bin_dir, "postgres"), "-D", data, "-p", str(self.port), "-k", self.dir,
                        "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
                        "-c", "full_page_writes=off", "-c", "max_connections=60", "-c", "logging_collector=off"]
        self.log = open(log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.close()
                raise PgServerError("postgres exited (%s): %s" % (self.proc.returncode, self._log_tail()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                import psycopg

                with psycopg.connect(self.dsn(), connect_timeout=2):
                    return
            except OSError:
                time.sleep(0.1)
            except Exception:  # starting up: "the database system is starting up"
                time.sleep(0.1)
        tail = self._log_tail()
        self.close()
        raise PgServerError("postgres did not accept connections within %.0f s: %s" % (timeout_s, tail))

    def _log_tail(self):
        try:
            with open(os.path.join(self.dir, "server.log")) as f:
                return f.read()[-1500:]
        except OSError:
            return ""

    def dsn(self, schema=None, db="postgres"):
        base = "postgresql://postgres@127.0.0.1:%d/%s" % (self.port, db)
        return base + ("?options=-csearch_path%%3D%s" % schema if schema else "")

    def new_schema(self, name):
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as c:
            c.execute("DROP SCHEMA IF EXISTS %s CASCADE" % name)
            c.execute("CREATE SCHEMA %s" % name)
        return self.dsn(name)

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: smart shutdown; then SIGINT (fast) if clients linger
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "log", None):
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
