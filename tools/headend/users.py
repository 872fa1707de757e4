"""Dashboard users (viewer, operator, admin) with scrypt password hashes, and the audit log of operator actions."""

import hashlib
import hmac
import json
import os
import re
import time

ROLES = ("viewer", "operator", "admin")
RANK = {r: i for i, r in enumerate(ROLES)}
NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
PASSWORD_MIN = 8
# scrypt: 2**15 * 8 * 128 bytes = 32 MiB of memory per hash, about 0.1 s on one core
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 15, 8, 1
_MAXMEM = 64 * 1024 * 1024

TABLES = """
CREATE TABLE IF NOT EXISTS users(
    name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL, created REAL, last_login REAL);
CREATE TABLE IF NOT EXISTS audit(
    id INTEGER PRIMARY KEY, at REAL NOT NULL, who TEXT NOT NULL, role TEXT, tid TEXT, op TEXT, args TEXT,
    req_id TEXT, ok INTEGER, answer TEXT, error TEXT, remote TEXT);
"""


def ensure(store):
    """Create the users and audit tables in the head-end's database if they are missing."""
    with store.tx() as db:
        for s in TABLES.split(";"):
            if s.strip():
                db.execute(s)


def hash_password(password, salt=None, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P):
    """'scrypt$n$r$p$salt$hash' (hex) of a password."""
    salt = os.urandom(16) if salt is None else salt
    h = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
    return "scrypt$%d$%d$%d$%s$%s" % (n, r, p, salt.hex(), h.hex())


def verify_password(password, stored):
    try:
        kind, n, r, p, salt, want = stored.split("$")
        if kind != "scrypt":
            return False
        got = hash_password(password, bytes.fromhex(salt), int(n), int(r), int(p)).split("$")[5]
    except (ValueError, AttributeError):
        return False
    return hmac.compare_digest(got, want)


def check_new(name, role, password):
    """A clear error for a bad user name, role or password (the password itself is never shown)."""
    if not NAME.match(name or ""):
        raise ValueError("user name %r: 1 to 64 of A-Z a-z 0-9 _ . @ -" % (name or "")[:64])
    if role not in ROLES:
        raise ValueError("role %r: one of %s" % (role, ", ".join(ROLES)))
    if len(password or "") < PASSWORD_MIN:
        raise ValueError("the password is shorter than %d characters" % PASSWORD_MIN)


def add_user(store, name, role, password, replace=False):
    """Create a user (or, with replace, change an existing one's role and password)."""
    check_new(name, role, password)
    ensure(store)
    h = hash_password(password)
    with store.tx() as db:
        if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
            if not replace:
                raise ValueError("user %s exists (give --replace to change the role and password)" % name)
            db.execute("UPDATE users SET role = ?, hash = ? WHERE name = ?", (role, h, name))
        else:
            db.execute("INSERT INTO users(name, role, hash, created) VALUES(?,?,?,?)", (name, role, h, time.time()))


def remove_user(store, name):
    with store.tx() as db:
        return db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount


def user(store, name):
    rows = store.query("SELECT name, role, created, last_login FROM users WHERE name = ?", (name,))
    return dict(rows[0]) if rows else None


def users(store):
    return [dict(r) for r in store.query("SELECT name, role, created, last_login FROM users ORDER BY name")]


# a hash to compare against when the user does not exist, so a wrong name costs as long as a wrong password
_DUMMY = hash_password("not a password", b"\0" * 16)


def authenticate(store, name, password):
    """The user's row (dict) when the name and password match, else None; remembers the login time."""
    rows = store.query("SELECT name, role, hash FROM users WHERE name = ?", (name or "",))
    if not rows:
        verify_password(password or "", _DUMMY)
        return None
    if not verify_password(password or "", rows[0]["hash"]):
        return None
    with store.tx() as db:
        db.execute("UPDATE users SET last_login = ? WHERE name = ?", (time.time(), name))
    return {"name": rows[0]["name"], "role": rows[0]["role"]}


def allowed(role, needed):
    return role in RANK and RANK[role] >= RANK[needed]


# -- audit ---------------------------------------------------------------------------------------------

def audit(store, who, role, tid, op, args, req_id=None, ok=None, answer=None, error=None, remote=None):
    """Record who sent what to which terminal and what came back (or why nothing did)."""
    with store.tx() as db:
        db.execute("INSERT INTO audit(at, who, role, tid, op, args, req_id, ok, answer, error, remote)"
                   " VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                   (time.time(), who, role, tid, op, json.dumps(args, sort_keys=True), req_id,
                    None if ok is None else int(bool(ok)), None if answer is None else json.dumps(answer),
                    error, remote))


def audit_log(store, tid=None, limit=200):
    where, args = ("WHERE tid = ?", (tid, limit)) if tid else ("", (limit,))
    return [dict(r) for r in store.query("SELECT * FROM audit %s ORDER BY id DESC LIMIT ?" % where, args)]
