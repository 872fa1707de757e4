"""The dashboard's asset register and line-loss pages (routes added to the app by webapp.create_app)."""

from decimal import Decimal

from flask import Response, g, redirect, render_template, request

from tools.headend import assets, lineloss, report


def add_routes(app, store_, settings, need, period_args):
    tz = settings.tz

    @app.route("/lineloss")
    def lineloss_page():
        store = store_()
        span = lineloss.common_span(store) if assets.areas(store) else None
        t_from, t_to = period_args(default=span)
        step = request.args.get("step")
        if step not in ("day", "whole"):
            step = "whole" if t_to - t_from < 86400 else "day"
        threshold = Decimal(str(settings.loss_threshold))
        rows = lineloss.compute(store, t_from, t_to, tz, step, threshold)
        for r in rows:
            r["pct"] = lineloss.percent(r["rate"])
        return render_template("lineloss.html", rows=rows, step=step, threshold=lineloss.percent(threshold),
                               t_from=_field(t_from, tz), t_to=_field(t_to, tz), areas=assets.areas(store),
                               q="from=%s&to=%s&step=%s" % (_field(t_from, tz), _field(t_to, tz), step))

    @app.route("/lineloss.csv")
    def lineloss_csv():
        import io

        store = store_()
        t_from, t_to = period_args(default=lineloss.common_span(store))
        step = request.args.get("step") if request.args.get("step") in ("day", "whole") else "day"
        rows = lineloss.compute(store, t_from, t_to, tz, step, Decimal(str(settings.loss_threshold)))
        buf = io.StringIO()
        lineloss.write_csv(rows, buf, report.iso)
        return Response(buf.getvalue(), mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=lineloss.csv"})

    @app.route("/assets")
    def assets_page():
        return render_template("assets.html", rows=assets.listing(store_()), error=None)

    @app.route("/assets", methods=["POST"])
    @need("admin")
    def assets_import():
        text = request.form.get("csv") or ""
        upload = request.files.get("file")
        if upload is not None and upload.filename:
            text = upload.read(4 * 1024 * 1024).decode("utf-8-sig", "replace")
        try:
            assets.import_csv(store_(), text, who=g.user["name"], where="the uploaded register")
        except ValueError as e:
            return render_template("assets.html", rows=assets.listing(store_()), error=str(e)), 400
        return redirect("/assets")


def area_markers(store, t_from, t_to, threshold):
    """Each area of the register for the map: its supply meter's position and its loss rate over the period,
    clipped to the span in which all the register's meters have readings (so both ends are interpolated)."""
    register = assets.areas(store)
    if not register:
        return []
    span = lineloss.common_span(store)
    a, b = (max(t_from, span[0]), min(t_to, span[1])) if span else (t_from, t_to)
    out = []
    for area, m in sorted(register.items()):
        where = report.meter_position(store, m["supply"], b) if m["supply"] else None
        if where is None:
            continue
        r = lineloss.area_loss(store, area, m["supply"], m["customers"], a, b, threshold) if b > a else None
        out.append({"area": area, "lat": where[1], "lon": where[2], "flagged": bool(r and r["flagged"]),
                    "rate": lineloss.percent(r["rate"]) if r else "-", "from": report.iso(a), "to": report.iso(b),
                    "incomplete": bool(r is None or r["missing"])})
    return out


def _field(t, tz):
    from datetime import datetime

    return datetime.fromtimestamp(t, tz).strftime("%Y-%m-%dT%H:%M:%S")
