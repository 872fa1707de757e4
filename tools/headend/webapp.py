"""The head-end's web dashboard (Flask): map, fleet, terminal pages, alarms, regional report, signed commands."""

import csv
import functools
import hmac
import io
import json
import logging
import os
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path

from flask import (Flask, Response, abort, g, jsonify, redirect, render_template, request, send_from_directory,
                   session, url_for)

from tools.headend import contract, report, users, view, webdata, webloss
from tools.headend.pgstore import open_store

log = logging.getLogger("bdmeter.headend")

HERE = Path(__file__).resolve().parent / "web"
VENDOR = HERE / "node_modules"
# the only files served from node_modules: the libraries' distributed builds
VENDOR_DIRS = ("leaflet/dist/", "leaflet.markercluster/dist/")
OPS = ("query", "read", "sync_time", "config.set", "config.get", "status")
SORTS = ("tid", "state", "last_seen", "meters", "fw")
PAGE = 500  # rows of the fleet table per page


class Settings:
    """What `bdmeter-headend serve` was given (see cli.py)."""

    def __init__(self, db, broker=None, prefix="bdmeter", tz=None, tiles=None, tiles_attribution="", regions=None,
                 command_timeout_s=20.0, heartbeat_s=None, secret=None, grid_deg=0.02, loss_threshold=0.10):
        self.db, self.broker, self.prefix = str(db), broker, prefix
        self.tz = tz or timezone.utc
        self.tiles, self.tiles_attribution = tiles, tiles_attribution
        self.regions = regions
        self.command_timeout_s = command_timeout_s
        self.heartbeat_s = heartbeat_s
        self.secret = secret or secrets.token_bytes(32)
        self.grid_deg = grid_deg
        self.loss_threshold = loss_threshold


def zone_label(tz):
    off = datetime.now(tz).strftime("%z")
    return "%s (UTC%s:%s)" % (view.zone_name(tz), off[:3], off[3:])


def create_app(settings, store=None):
    app = Flask(__name__, template_folder=str(HERE / "templates"), static_folder=str(HERE / "static"),
                static_url_path="/static")
    app.secret_key = settings.secret
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict", PERMANENT_SESSION_LIFETIME=43200)
    st = store or open_store(settings.db)
    users.ensure(st)
    app.extensions["bdmeter"] = {"store": st, "settings": settings}
    tz = settings.tz

    def store_():
        return app.extensions["bdmeter"]["store"]

    app.add_template_filter(lambda t: webdata.fmt_time(t, tz), "t")
    app.add_template_filter(lambda v: "-" if v is None else v, "d")

    @app.context_processor
    def _common():
        return {"me": g.get("user"), "zone": zone_label(tz), "csrf": session.get("csrf", ""),
                "can_command": g.get("user") is not None and users.allowed(g.user["role"], "operator")}

    @app.before_request
    def _auth():
        g.user = None
        name = session.get("user")
        if name:
            u = users.user(store_(), name)
            if u is not None:
                g.user = u
            else:
                session.clear()
        if request.method == "POST":
            sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf") or ""
            if not session.get("csrf") or not hmac.compare_digest(sent, session["csrf"]):
                return _refuse(403, "missing or wrong CSRF token: reload the page")
        if request.endpoint not in ("login", "static", "favicon") and g.user is None:
            if request.path.startswith("/api/") or request.method == "POST":
                return _refuse(401, "log in first")
            return redirect(url_for("login", next=request.path))
        return None

    def _refuse(code, text):
        if request.path.startswith("/api/") or request.is_json or request.headers.get("X-CSRF-Token"):
            return jsonify({"ok": False, "error": text}), code
        return Response(text + "\n", code, mimetype="text/plain")

    def need(role):
        def deco(f):
            @functools.wraps(f)
            def inner(*a, **kw):
                if not users.allowed(g.user["role"], role):
                    return _refuse(403, "your role (%s) may not do this: it needs %s" % (g.user["role"], role))
                return f(*a, **kw)
            return inner
        return deco

    @app.after_request
    def _headers(resp):
        # nothing on the pages comes from elsewhere: scripts, styles and images are ours or the vendored libraries
        csp = "default-src 'self'; img-src 'self' data:%s; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
        resp.headers["Content-Security-Policy"] = csp % (" " + _origin(settings.tiles) if settings.tiles else "")
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    # -- login -------------------------------------------------------------------------------------------

    @app.route("/login", methods=["GET", "POST"])
    def login():
        session.setdefault("csrf", secrets.token_hex(16))
        error = None
        if request.method == "POST":
            u = users.authenticate(store_(), request.form.get("user", ""), request.form.get("password", ""))
            if u is None:
                log.warning("dashboard: failed login for %r from %s", request.form.get("user", "")[:64],
                            request.remote_addr)
                error = "wrong user name or password"
            else:
                nxt = request.args.get("next") or "/"
                session.clear()
                session.permanent = True
                session.update(user=u["name"], csrf=secrets.token_hex(16))
                log.info("dashboard: %s (%s) logged in from %s", u["name"], u["role"], request.remote_addr)
                return redirect(nxt if nxt.startswith("/") and not nxt.startswith("//") else "/")
        return render_template("login.html", error=error), (401 if error else 200)

    @app.route("/logout", methods=["POST"])
    def logout():
        session.clear()
        return redirect(url_for("login"))

    # -- pages ---------------------------------------------------------------------------------------------

    def period(default=None):
        """(from, to) Unix seconds from ?from=&to= (local date-times in the dashboard's zone), else the default."""
        d_from, d_to = default or webdata.default_period(store_())
        try:
            t_from = _local(request.args.get("from"), tz) if request.args.get("from") else d_from
            t_to = _local(request.args.get("to"), tz) if request.args.get("to") else d_to
        except ValueError as e:
            abort(Response("bad period: %s\n" % e, 400, mimetype="text/plain"))
        if t_to <= t_from:
            abort(Response("bad period: the end is not after the start\n", 400, mimetype="text/plain"))
        return t_from, t_to

    def fleet():
        return store_().fleet(time.time(), settings.heartbeat_s)

    @app.route("/")
    def map_page():
        t_from, t_to = period()
        return render_template("map.html", t_from=_field(t_from, tz), t_to=_field(t_to, tz),
                               tiles=settings.tiles or "", attribution=settings.tiles_attribution or "")

    @app.route("/api/map")
    def api_map():
        t_from, t_to = period()
        rep = webdata.regional(store_(), t_from, t_to, settings.regions, settings.grid_deg)
        from decimal import Decimal

        areas = webloss.area_markers(store_(), t_from, t_to, Decimal(str(settings.loss_threshold)))
        return jsonify({"terminals": webdata.markers(fleet(), tz), "regions": webdata.geojson(rep), "areas": areas,
                        "total_kwh": str(rep["total_kwh"]), "from": report.iso(t_from), "to": report.iso(t_to)})

    @app.route("/api/fleet")
    def api_fleet():
        return jsonify(webdata.markers(fleet(), tz))

    @app.route("/fleet")
    def fleet_page():
        everyone = fleet()
        counts = {s: sum(1 for t in everyone if t["state"] == s) for s in view.STATES}
        state = request.args.get("state") or ""
        q = (request.args.get("q") or "").strip()
        rows = [t for t in everyone if (not state or t["state"] == state)
                and (not q or q in t["tid"] or any(q in m for m in t["meters"]))]
        sort = request.args.get("sort") if request.args.get("sort") in SORTS else "tid"
        desc = request.args.get("dir") == "desc"
        key = {"tid": lambda t: t["tid"], "state": lambda t: (t["state"], t["tid"]),
               "last_seen": lambda t: t["last_seen"] or 0, "meters": lambda t: " ".join(t["meters"]),
               "fw": lambda t: t["fw"] or ""}[sort]
        rows.sort(key=key, reverse=desc)
        # a page of rows at a time: the whole of a 5,000-terminal fleet is 1.4 MB of HTML
        pages = max(1, (len(rows) + PAGE - 1) // PAGE)
        arg = request.args.get("page") or "1"
        page = min(pages, max(1, int(arg))) if arg.isdigit() else 1
        matched = len(rows)
        rows = rows[(page - 1) * PAGE:page * PAGE]
        for t in rows:
            t["seen"] = webdata.fmt_time(t["last_seen"], tz)
            t["kwh"] = " ".join("%.2f" % t["energy"][m]["fwd"] for m in t["meters"]
                                if m in t["energy"] and t["energy"][m]["fwd"] is not None)
        return render_template("fleet.html", rows=rows, counts=counts, total=len(everyone), state=state, q=q,
                               sort=sort, desc=desc, states=view.STATES, page=page, pages=pages, matched=matched,
                               first=(page - 1) * PAGE + 1)

    @app.route("/terminal/<tid>")
    def terminal_page(tid):
        if not contract.valid_id(tid):
            abort(404)
        d = webdata.terminal(store_(), tid, tz)
        if d is None:
            abort(404)
        return render_template("terminal.html", d=d, tid=tid, chart=webdata.chart_svg(d["daily"]), ops=OPS,
                               audit=users.audit_log(store_(), tid, 20), commands=settings.broker is not None)

    @app.route("/terminal/<tid>/command", methods=["POST"])
    @need("operator")
    def command(tid):
        if not contract.valid_id(tid):
            abort(404)
        body = request.get_json(silent=True) or {}
        op, text = body.get("op"), str(body.get("args") or "").strip()
        return _command(tid, op, text)

    def _command(tid, op, text):
        from tools.headend.query import op_for

        if op not in OPS:
            return jsonify({"ok": False, "error": "unknown operation %r" % str(op)[:40]}), 400
        words = text.split() if op == "query" else [op] + text.split()
        try:
            op2, args = op_for(words or None)
        except ValueError as e:
            return jsonify({"ok": False, "error": str(e)}), 400
        who, role, remote = g.user["name"], g.user["role"], request.remote_addr
        if settings.broker is None:
            users.audit(store_(), who, role, tid, op2, args, error="no broker configured", remote=remote)
            return jsonify({"ok": False, "error": "this dashboard has no broker (serve --broker)"}), 503
        try:
            key = store_().key(tid)
        except ValueError as e:
            users.audit(store_(), who, role, tid, op2, args, error=str(e), remote=remote)
            return jsonify({"ok": False, "error": str(e)}), 500
        if key is None:
            users.audit(store_(), who, role, tid, op2, args, error="no command key", remote=remote)
            return jsonify({"ok": False, "error": "no command key stored for %s" % tid}), 409
        from tools.headend.query import send_command

        req_id = "w-" + secrets.token_hex(6)
        try:
            resp = send_command(settings.broker, tid, key, op2, args, settings.prefix, settings.command_timeout_s,
                                req_id=req_id)
        except (TimeoutError, OSError) as e:
            users.audit(store_(), who, role, tid, op2, args, req_id=req_id, error=str(e), remote=remote)
            return jsonify({"ok": False, "error": str(e), "id": req_id}), 504
        with store_().tx():
            store_().touch(tid, time.time())
            store_().add_response(tid, resp, time.time())
        users.audit(store_(), who, role, tid, op2, args, req_id=req_id, ok=resp.get("ok"), answer=resp, remote=remote)
        log.info("dashboard: %s sent %s to %s: %s", who, op2, tid, "ok" if resp.get("ok") else resp.get("error"))
        return jsonify({"ok": bool(resp.get("ok")), "answer": resp, "id": req_id})

    @app.route("/alarms")
    def alarms_page():
        al = webdata.alarms(store_(), tz, heartbeat_s=settings.heartbeat_s)
        kinds = sorted({a["kind"] for a in al})
        kind = request.args.get("kind") or ""
        return render_template("alarms.html", alarms=[a for a in al if not kind or a["kind"] == kind], kinds=kinds,
                               kind=kind, total=len(al))

    @app.route("/report")
    def report_page():
        t_from, t_to = period()
        rep = webdata.regional(store_(), t_from, t_to, settings.regions, settings.grid_deg)
        q = "from=%s&to=%s" % (_field(t_from, tz), _field(t_to, tz))
        return render_template("report.html", rep=rep, t_from=_field(t_from, tz), t_to=_field(t_to, tz), q=q,
                               by=("regions" if settings.regions else "grid of %g degrees" % settings.grid_deg))

    @app.route("/report.csv")
    def report_csv():
        t_from, t_to = period()
        rep = webdata.regional(store_(), t_from, t_to, settings.regions, settings.grid_deg)
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["region", "meters", "energy_kwh", "period_from", "period_to"])
        for r in rep["regions"]:
            w.writerow([r["name"], len(r["meters"]), str(r["kwh"]), report.iso(t_from), report.iso(t_to)])
        name = "energy-%s-%s.csv" % (_fname(t_from, tz), _fname(t_to, tz))
        return Response(buf.getvalue(), mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=%s" % name})

    @app.route("/report.geojson")
    def report_geojson():
        t_from, t_to = period()
        rep = webdata.regional(store_(), t_from, t_to, settings.regions, settings.grid_deg)
        name = "energy-%s-%s.geojson" % (_fname(t_from, tz), _fname(t_to, tz))
        return Response(json.dumps(webdata.geojson(rep)), mimetype="application/geo+json",
                        headers={"Content-Disposition": "attachment; filename=%s" % name})

    @app.route("/audit")
    def audit_page():
        rows = users.audit_log(store_(), limit=500)
        return render_template("audit.html", rows=rows)

    @app.route("/users")
    @need("admin")
    def users_page():
        rows = users.users(store_())
        for r in rows:
            r["login"] = webdata.fmt_time(r["last_login"], tz)
        return render_template("users.html", rows=rows)

    webloss.add_routes(app, store_, settings, need, period)

    @app.route("/favicon.ico")
    def favicon():
        return Response(status=204)

    @app.route("/vendor/<path:name>")
    def vendor(name):
        if not name.startswith(VENDOR_DIRS) or ".." in name:
            abort(404)
        if not (VENDOR / name).is_file():
            abort(Response("%s is not installed: run `make web-deps`\n" % name, 404, mimetype="text/plain"))
        return send_from_directory(VENDOR, name)

    return app


def _origin(url):
    from urllib.parse import urlsplit

    p = urlsplit(url)
    return "%s://%s" % (p.scheme, p.netloc.replace("{s}", "*")) if p.scheme and p.netloc else ""


def _local(text, tz):
    """A date or date-time typed in the form (in the dashboard's zone unless it names one) to Unix seconds."""
    dt = datetime.fromisoformat(text.strip())
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return int(dt.timestamp())


def _field(t, tz):
    return datetime.fromtimestamp(t, tz).strftime("%Y-%m-%dT%H:%M:%S")


def _fname(t, tz):
    return datetime.fromtimestamp(t, tz).strftime("%Y%m%dT%H%M%S")


def vendor_ready():
    """None when the front-end libraries are installed, else what to run."""
    missing = [d for d in VENDOR_DIRS if not (VENDOR / d).is_dir()]
    return None if not missing else "front-end libraries missing (%s): run `make web-deps`" % ", ".join(missing)


def serve(settings, host="127.0.0.1", port=8080, threads=8):
    """Serve the dashboard with waitress until Ctrl-C."""
    import signal
    import threading

    import waitress

    if threading.current_thread() is threading.main_thread():
        # started in the background by a non-interactive shell, SIGINT arrives ignored: Ctrl-C and SIGTERM stop it
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    problem = vendor_ready()
    if problem:
        log.warning("dashboard: %s; the map will not load", problem)
    app = create_app(settings)
    print("bdmeter dashboard on http://%s:%d/ (times in %s); Ctrl-C stops it" % (host, port, zone_label(settings.tz)),
          flush=True)
    waitress.serve(app, host=host, port=port, threads=threads, ident="bdmeter")


def env_secret():
    """The session-signing secret from BDMETER_WEB_SECRET (hex) if set, so sessions survive a restart."""
    s = os.environ.get("BDMETER_WEB_SECRET")
    return bytes.fromhex(s) if s else None


def background(app, host="127.0.0.1", port=0, threads=8):
    """Serve `app` with waitress in a daemon thread (tests, benchmark); returns (server, base URL).
    `server.close()` stops it."""
    import threading

    import waitress.server

    server = waitress.server.create_server(app, host=host, port=port, threads=threads, ident="bdmeter")
    threading.Thread(target=server.run, name="dashboard", daemon=True).start()
    return server, "http://%s:%s" % (host, server.effective_port)
