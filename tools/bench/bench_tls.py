"""TLS in the modem: handshake bytes on the wire (server-only, mutual) and the data cost a day with TLS at IP level.

The handshakes are the modem simulator's real TLS connections (tools/sim/modem_ssl.py, TLS 1.2 as the
firmware configures it) to a real mosquitto's TLS listener with the broker's certificate chain from
tools/pki.py; every byte each way is counted on the wire. The per-day cost takes the terminal's application
bytes (tools/bench/bench_terminal.py: MQTT bytes per message at default intervals) and adds, in a stated
model, the TLS record overhead measured here and the IPv4 + TCP headers a SIM is billed for.
"""

import asyncio
import json
import math
import tempfile
from pathlib import Path

from tools.pki import make_pki
from tools.procs import LOOPBACK, ROOT, Mosquitto
from tools.sim.modem import ModemSim
from tools.sim.modem_ssl import CTX_DEFAULTS, SimSslSocket

TID = "861234567890123"
_DAY = 86400
_POLL_S, _HEARTBEAT_S, _KEEPALIVE_S, _FULL_EVERY = 900, 300, 600, 12  # firmware defaults (firmware/config.py, app.py)
IP_TCP_HEADER = 52  # IPv4 20 + TCP 20 + timestamps option 12 (Linux-like stacks; LTE bills IP packets)
SYN_BYTES = 60  # SYN and SYN/ACK carry MSS, SACK, window scale and timestamps options
MSS = 1400  # a conservative LTE path MSS


def _segments(n):
    return max(1, math.ceil(n / MSS))


def handshake(pki, port, mutual):
    """One real TLS handshake of the simulated module to the broker; its figures."""
    sim = ModemSim()
    sim.files["UFS"]["ca.pem"] = pki.ca.read_bytes()
    cfg = dict(CTX_DEFAULTS, sslversion=3, seclevel=2 if mutual else 1, cacert="ca.pem", ignorelocaltime=0, sni=1)
    if mutual:
        cert, key = pki.client(TID)
        sim.files["UFS"]["client.pem"] = cert.read_bytes()
        sim.files["UFS"]["client.key"] = key.read_bytes()
        cfg.update(clientcert="client.pem", clientkey="client.key")

    async def go():
        s = SimSslSocket(0, LOOPBACK, port, 1, cfg)
        err = await s.open(sim)
        if err:
            raise RuntimeError("handshake failed (%d): %s" % (err, s.failure))
        overhead = {n: s.wire_out(b"\x00" * n) - n for n in (2, 100, 600)}  # one record each
        s.close_conn()
        return s, overhead

    s, overhead = asyncio.run(go())
    flights = s.hs_flights
    # TCP: SYN, SYN/ACK, ACK; each flight's segments; the last flight (the server's Finished) drawn one ACK
    ip = SYN_BYTES * 2 + IP_TCP_HEADER + sum(IP_TCP_HEADER * _segments(n) for _, n in flights) + IP_TCP_HEADER
    return {"up": s.hs_up, "down": s.hs_down, "flights": len(flights), "ip": s.hs_up + s.hs_down + ip,
            "version": s.version, "cipher": s.cipher, "record_overhead": overhead}


def app_base():
    """MQTT bytes per message at default intervals (bench_terminal): from build/bench.json, else measured now."""
    path = ROOT / "build" / "bench.json"
    try:
        t = json.loads(path.read_text())["terminal"]
        t["wire_bytes_per_energy_message"]  # noqa: B018  (present?)
        return t, "build/bench.json (terminal)"
    except (OSError, ValueError, KeyError):
        from tools.bench import bench_terminal

        with tempfile.TemporaryDirectory(prefix="bdmeter-bench-") as d:
            return bench_terminal.wire_and_heap(Path(d) / "wire"), "measured now (bench_terminal.wire_and_heap)"


def per_day(base, record_overhead):
    """(application bytes, plain TCP IP bytes, TLS IP bytes) a day at default intervals, one connection all day."""
    energy_n = _DAY / _POLL_S
    beats_n = _DAY / _HEARTBEAT_S
    pings_n = energy_n if _POLL_S > _KEEPALIVE_S else 0
    e = base["wire_bytes_per_energy_message"]  # PUBLISH up + PUBACK (4) down
    h = ((_FULL_EVERY - 1) * base["wire_bytes_per_heartbeat_short"] + base["wire_bytes_per_heartbeat_full"]) \
        / _FULL_EVERY
    app = energy_n * e + beats_n * h + pings_n * 4
    # segments: a QoS 1 PUBLISH up, its PUBACK down (acking it), a pure ACK up = 3; a QoS 0 heartbeat up and its
    # ACK = 2; PINGREQ, PINGRESP, ACK = 3. TLS: one record per MQTT packet (each QSSLSEND is one record).
    segments = energy_n * 3 + beats_n * 2 + pings_n * 3
    records = energy_n * 2 + beats_n * 1 + pings_n * 2
    plain = app + segments * IP_TCP_HEADER
    tls = plain + records * record_overhead
    return app, plain, tls


def run():
    out = {}
    with tempfile.TemporaryDirectory(prefix="bdmeter-bench-tls-") as d:
        pki = make_pki(Path(d) / "pki", clients=(TID,))
        for mutual in (False, True):
            logs = Path(d) / ("mqtt-%d" % mutual)
            logs.mkdir()
            broker = Mosquitto(log_dir=logs, pki=pki, require_certificate=mutual)
            try:
                hs = handshake(pki, broker.tls_port, mutual)
            finally:
                broker.stop()
            kind = "mutual" if mutual else "server_only"
            out["tls_handshake_bytes_up_%s" % kind] = hs["up"]
            out["tls_handshake_bytes_down_%s" % kind] = hs["down"]
            out["tls_handshake_bytes_total_%s" % kind] = hs["up"] + hs["down"]
            out["tls_handshake_flights_%s" % kind] = hs["flights"]
            out["tls_connect_ip_bytes_%s" % kind] = hs["ip"]
            out["tls_version"], out["tls_cipher"] = hs["version"], hs["cipher"]
            overhead = hs["record_overhead"]
    rec = overhead[100]
    out["tls_record_overhead_bytes"] = rec
    out["tls_record_overhead_by_payload"] = overhead
    base, source = app_base()
    app, plain, tls = per_day(base, rec)
    connect = out["tls_connect_ip_bytes_server_only"]
    out["wire_app_bytes_per_day_default_intervals"] = round(app)
    out["wire_ip_bytes_per_day_plain_tcp"] = round(plain)
    out["wire_ip_bytes_per_day_tls"] = round(tls + connect)
    out["wire_ip_kb_per_day_plain_tcp"] = round(plain / 1024, 1)
    out["wire_ip_kb_per_day_tls"] = round((tls + connect) / 1024, 1)
    out["wire_ip_tls_extra_percent"] = round(100.0 * (tls + connect - plain) / plain, 1)
    out["wire_ip_bytes_per_tls_reconnect_server_only"] = connect
    out["wire_ip_bytes_per_tls_reconnect_mutual"] = out["tls_connect_ip_bytes_mutual"]
    out["wire_model"] = ("app bytes from %s; +%d B IPv4/TCP headers per segment (QoS 1 publish: 3 segments, QoS 0 "
                         "heartbeat: 2, ping: 3); TLS: +%d B per record (one per MQTT packet, measured), one TLS "
                         "connection a day (TCP handshake and handshake flights with headers, MSS %d)"
                         % (source, IP_TCP_HEADER, rec, MSS))
    return out


if __name__ == "__main__":
    for k, v in run().items():
        print("%-48s %s" % (k, v))
