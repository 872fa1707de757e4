"""The report as a map PNG (Pillow): regions shaded by energy, terminals as points, legend, scale bar, title."""

import math

from PIL import Image, ImageDraw, ImageFont

from tools.headend.report import iso

KM_PER_DEG_LAT = 110.574
KM_PER_DEG_LON_EQ = 111.320
# YlOrRd: pale for little consumption, dark red for the most
RAMP = ((255, 255, 204), (254, 217, 118), (253, 141, 60), (227, 26, 28), (128, 0, 38))
BACKGROUND = (246, 246, 242)
NO_DATA = (225, 225, 225)
INK = (40, 40, 40)
LEGEND_W = 170
TITLE_H = 64
MARGIN = 16


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def ramp(f):
    """Colour for a fraction 0..1 of the largest value."""
    f = min(max(f, 0.0), 1.0) * (len(RAMP) - 1)
    i = min(int(f), len(RAMP) - 2)
    a, b, t = RAMP[i], RAMP[i + 1], f - i
    return tuple(int(round(a[k] + (b[k] - a[k]) * t)) for k in range(3))


def nice_length(km):
    """The largest 1-2-5 step not above `km`."""
    if km <= 0:
        return 1.0
    p = 10 ** math.floor(math.log10(km))
    for m in (5, 2, 1):
        if m * p <= km:
            return m * p
    return p


class _Projection:
    """Equirectangular at the mean latitude: degrees to pixels with equal km per pixel in x and y."""

    def __init__(self, bounds, box):
        lat0, lon0, lat1, lon1 = bounds
        self.kx = KM_PER_DEG_LON_EQ * math.cos(math.radians((lat0 + lat1) / 2))
        w_km, h_km = (lon1 - lon0) * self.kx, (lat1 - lat0) * KM_PER_DEG_LAT
        x0, y0, x1, y1 = box
        self.px_per_km = min((x1 - x0) / w_km, (y1 - y0) / h_km)
        self.ox = x0 + ((x1 - x0) - w_km * self.px_per_km) / 2
        self.oy = y0 + ((y1 - y0) - h_km * self.px_per_km) / 2
        self.lon0, self.lat1 = lon0, lat1

    def __call__(self, lat, lon):
        return (self.ox + (lon - self.lon0) * self.kx * self.px_per_km,
                self.oy + (self.lat1 - lat) * KM_PER_DEG_LAT * self.px_per_km)


def _bounds(report):
    lats, lons = [], []
    for r in report["regions"]:
        if r["region"] is not None:
            b = r["region"].bounds
            lats += [b[0], b[2]]
            lons += [b[1], b[3]]
    for m in report["meters"]:
        lats.append(m["lat"])
        lons.append(m["lon"])
    if not lats:
        return 40.80, 111.70, 40.90, 111.80
    lat0, lat1, lon0, lon1 = min(lats), max(lats), min(lons), max(lons)
    # at least ~1 km of view, and a margin so edge points are not clipped
    pad_lat = max((lat1 - lat0) * 0.06, 0.005)
    pad_lon = max((lon1 - lon0) * 0.06, 0.005)
    return lat0 - pad_lat, lon0 - pad_lon, lat1 + pad_lat, lon1 + pad_lon


def draw(report, path, size=(1000, 800), title=None):
    """Write the map PNG of a report from report.compute(); return the path."""
    w, h = size
    img = Image.new("RGB", size, BACKGROUND)
    d = ImageDraw.Draw(img)
    big, small = _font(20), _font(13)
    box = (MARGIN, TITLE_H, w - LEGEND_W - MARGIN, h - MARGIN)
    bounds = _bounds(report)
    proj = _Projection(bounds, box)
    d.rectangle(box, fill=(255, 255, 255), outline=(190, 190, 190))

    if report.get("grid_deg"):
        _grid_lines(d, proj, bounds, report["grid_deg"], box)
    vmax = max([float(r["kwh"]) for r in report["regions"]] + [0.0])
    for r in report["regions"]:
        reg = r["region"]
        if reg is None:
            continue
        colour = ramp(float(r["kwh"]) / vmax) if r["meters"] and vmax > 0 else (ramp(0) if r["meters"] else NO_DATA)
        _fill_region(img, proj, reg, colour)
    for r in report["regions"]:
        if r["region"] is not None:
            for poly in r["region"].polygons:
                for ring in poly:
                    d.line([proj(p[1], p[0]) for p in ring], fill=(110, 110, 110), width=1)
            _region_label(d, proj, r, report.get("grid_deg"), small)

    seen = set()
    for m in report["meters"]:
        if (m["tid"], m["lat"], m["lon"]) in seen:
            continue
        seen.add((m["tid"], m["lat"], m["lon"]))
        x, y = proj(m["lat"], m["lon"])
        d.ellipse((x - 5, y - 5, x + 5, y + 5), fill=(20, 20, 20), outline=(255, 255, 255), width=2)
        d.text((x + 7, y - 7), m["tid"][-4:], fill=INK, font=small, stroke_width=2, stroke_fill=(255, 255, 255))

    _scale_bar(d, proj, box, small)
    _legend(d, (w - LEGEND_W, TITLE_H, w - MARGIN, h - MARGIN), vmax, report, small)
    heading = title or "Energy consumed per region, %s to %s" % (iso(report["from"]), iso(report["to"]))
    d.text((MARGIN, 10), heading, fill=INK, font=big)
    sub = "total %.2f kWh from %d meters" % (report["total_kwh"], len(report["meters"]))
    if report.get("grid_deg"):
        sub += ", grid %g deg" % report["grid_deg"]
    if not report["meters"]:
        sub += " (no readings in the period)"
    d.text((MARGIN, 38), sub, fill=(90, 90, 90), font=small)
    img.save(path, "PNG")
    return path


def _fill_region(img, proj, region, colour):
    # a mask per region so holes stay holes without painting over other regions
    mask = Image.new("L", img.size, 0)
    md = ImageDraw.Draw(mask)
    for poly in region.polygons:
        md.polygon([proj(p[1], p[0]) for p in poly[0]], fill=255)
        for hole in poly[1:]:
            md.polygon([proj(p[1], p[0]) for p in hole], fill=0)
    img.paste(colour, (0, 0), mask)


def _region_label(d, proj, r, grid, font):
    lat0, lon0, lat1, lon1 = r["region"].bounds
    x0, y0 = proj(lat1, lon0)
    x1, y1 = proj(lat0, lon1)
    text = "%.1f kWh" % r["kwh"] if grid else "%s\n%.1f kWh" % (r["name"], r["kwh"])
    box = d.multiline_textbbox((0, 0), text, font=font)
    if box[2] - box[0] + 6 < x1 - x0 and box[3] - box[1] + 6 < y1 - y0:
        d.multiline_text((x0 + 4, y0 + 3), text, fill=INK, font=font, stroke_width=2, stroke_fill=(255, 255, 255))


def _grid_lines(d, proj, bounds, deg, box):
    lat0, lon0, lat1, lon1 = bounds
    if (lat1 - lat0) / deg > 200 or (lon1 - lon0) / deg > 200:
        return
    k = math.floor(lon0 / deg)
    while k * deg <= lon1:
        x = proj(lat0, k * deg)[0]
        if box[0] < x < box[2]:
            d.line([(x, box[1]), (x, box[3])], fill=(232, 232, 232))
        k += 1
    k = math.floor(lat0 / deg)
    while k * deg <= lat1:
        y = proj(k * deg, lon0)[1]
        if box[1] < y < box[3]:
            d.line([(box[0], y), (box[2], y)], fill=(232, 232, 232))
        k += 1


def _scale_bar(d, proj, box, font):
    km = nice_length((box[2] - box[0]) / 5 / proj.px_per_km)
    px = km * proj.px_per_km
    x0, y0 = box[0] + 14, box[3] - 22
    d.rectangle((x0 - 6, y0 - 20, x0 + px + 40, y0 + 10), fill=(255, 255, 255))
    d.line([(x0, y0), (x0 + px, y0)], fill=INK, width=3)
    for x in (x0, x0 + px / 2, x0 + px):
        d.line([(x, y0 - 6), (x, y0 + 4)], fill=INK, width=2)
    label = "%g km" % km if km >= 1 else "%d m" % round(km * 1000)
    d.text((x0, y0 - 20), label, fill=INK, font=font)


def _legend(d, box, vmax, report, font):
    x0, y0, x1, y1 = box
    d.text((x0 + 8, y0), "energy (kWh)", fill=INK, font=font)
    top, bottom = y0 + 24, y0 + 24 + max(80, (y1 - y0) // 2)
    for y in range(top, bottom):
        d.line([(x0 + 8, y), (x0 + 30, y)], fill=ramp(1 - (y - top) / (bottom - top)))
    d.rectangle((x0 + 8, top, x0 + 30, bottom), outline=(110, 110, 110))
    for f in (1.0, 0.5, 0.0):
        y = top + (1 - f) * (bottom - top)
        d.line([(x0 + 30, y), (x0 + 36, y)], fill=INK)
        d.text((x0 + 40, y - 7), "%.1f" % (vmax * f), fill=INK, font=font)
    y = bottom + 20
    d.ellipse((x0 + 14, y, x0 + 24, y + 10), fill=(20, 20, 20), outline=(255, 255, 255), width=2)
    d.text((x0 + 34, y - 2), "terminal", fill=INK, font=font)
    if not report.get("grid_deg"):
        y += 22
        d.rectangle((x0 + 8, y, x0 + 30, y + 12), fill=NO_DATA, outline=(110, 110, 110))
        d.text((x0 + 34, y - 1), "no meters", fill=INK, font=font)
    outside = [r for r in report["regions"] if r["region"] is None]
    if outside:
        y += 22
        d.text((x0 + 8, y), "outside: %.1f kWh" % outside[0]["kwh"], fill=INK, font=font)
