"""The link to the server: modem bring-up, MQTT over the modem's TCP (or TLS, firmware/tls.py) socket, outbox drain,
recovery."""

import asyncio

from mqtt_session import MQTTError, Session

from firmware import payloads

_IDLE_WAIT_MS = 1000  # how long the drain loop waits for a new record before checking in again


def _as_oserror(e):
    return e if isinstance(e, OSError) else OSError("modem: %s" % (e,))


class _SocketStream:
    """Adapts the modem driver's socket to what the MQTT session expects: b"" once closed, and every failure
    an OSError. The modem's own errors (an AT timeout from a hung module, a closed socket) would otherwise
    escape the session's tasks and the publishing task instead of ending the session."""

    def __init__(self, sock, errors):
        self.sock = sock
        self.errors = errors  # the modem driver's exception classes
        self.error = None  # the modem's own error that ended the stream, kept to classify the failure

    async def write(self, data):
        try:
            await self.sock.write(data)
        except self.errors as e:
            self.error = self.error or e
            raise _as_oserror(e)

    async def read(self, n):
        try:
            while True:
                data = await self.sock.read(n)
                if data is not None:
                    return data
        except self.errors as e:
            self.error = self.error or e
            raise _as_oserror(e)

    def close(self):
        self.sock.close()


class Uplink:
    def __init__(self, t):
        self.t = t
        self.session = None
        self.connects = 0
        self.reconnects = 0
        self.published = 0
        self.tls_fail = 0  # TLS set-up or handshake failures (module error 566 etc.) with a healthy network
        self._tls = None  # firmware.tls.TlsSetup, made on the first TLS connection
        self._stream = None
        self.wake = asyncio.Event()

    @property
    def connected(self):
        return self.session is not None and self.session.connected

    def topic(self, leaf):
        return payloads.topic(self.t.cfg["topic_prefix"], self.t.tid, leaf)

    def peer(self):
        return "broker %s:%d" % (self.t.cfg["broker_host"], self.t.cfg["broker_port"])

    async def _connect(self):
        t = self.t
        cfg = t.cfg
        self._stream = None
        tls = cfg["broker_tls"]
        if tls:
            if self._tls is None:
                from firmware.tls import TlsSetup

                self._tls = TlsSetup(t.modem, cfg, t.clock, t.log, t.emit_event)
            await self._tls.prepare()
        sock = await t.modem.open_socket(cfg["broker_host"], cfg["broker_port"], label="broker", tls=tls)
        self._stream = _SocketStream(sock, t.modem_errors)
        # a user name without a password is valid MQTT; umqtt.simple then needs the empty password, not None
        s = Session(self._stream, t.tid, user=cfg["broker_user"] or None,
                    password=cfg["broker_pass"] if cfg["broker_user"] else None, keepalive=cfg["keepalive_s"],
                    on_message=t.commands.incoming, log=t.log, counters=t.mqtt_counters)
        # Answers to commands that arrive while the rest of the connect runs (subscribe, status) go out on it.
        self.session = s
        try:
            # A persistent session: the broker queues the commands sent while the terminal is offline.
            await s.connect(will=(self.topic("status"), payloads.WILL, 1, True), clean=False)
            await s.subscribe(self.topic("cmd"), 1)
            await s.subscribe(self.topic("updc"), 0)
            ts, tsrc = t.clock.stamp()
            await s.publish(self.topic("status"), payloads.status_online(ts, tsrc), qos=1, retain=True)
        except BaseException:
            s.close()
            raise
        return s

    async def publish(self, leaf, text, qos=1, retain=False):
        """Publish now if connected (answers, heartbeats); False when there is no session."""
        s = self.session
        if s is None or not s.connected:
            return False
        try:
            await s.publish(self.topic(leaf), text, qos=qos, retain=retain)
        except MQTTError as e:
            self.t.log.warning("publish %s failed: %s", leaf, e)
            return False
        return True

    async def _drain(self, s):
        """Send the outbox in order; each record leaves only after its PUBACK. Returns when the session dies."""
        t = self.t
        ob = t.outbox
        while s.connected:
            t.checkin("uplink")
            recs = ob.peek(1)
            if not recs:
                self.wake.clear()
                try:
                    await asyncio.wait_for_ms(self.wake.wait(), _IDLE_WAIT_MS)
                except asyncio.TimeoutError:
                    pass
                continue
            seq, kind, text = recs[0]
            t.log.debug("record %d (%s) published", seq, kind)
            await s.publish(self.topic(kind), text, qos=1)
            ob.ack(seq)
            t.log.debug("record %d acknowledged", seq)
            self.published += 1

    def classify(self, e, connecting):
        """The failure class for the modem's recovery: 'server', 'network', 'module' or None.

        The modem's own error decides when there is one; an MQTT failure on a socket the module opened
        (CONNACK refused or missing, closed by the server) is the server's side while the module is ready.
        """
        m = self.t.modem
        st = self._stream
        if self._tls is not None:
            from firmware.tls import TlsSetupError

            if isinstance(e, TlsSetupError):
                return "server"  # nothing the module or the network could fix: retry with the server back-off
        cause = m.failure_class(st.error if st is not None and st.error is not None else e)
        if cause is None and st is not None and st.error is None and m.ready and (
                connecting or st.sock.peer_closed):
            cause = "server"
        return cause

    async def run(self):
        t = self.t
        while True:
            t.checkin("uplink")
            s = None
            self._stream = None
            connecting = True
            try:
                if not await t.modem_up(bring_up=True):
                    raise t.ModemError("modem not ready")
                s = await self._connect()
                connecting = False
                self.connects += 1
                t.modem.recovered()
                t.log.info("connected to %s as %s", self.peer(), t.tid)
                t.emit_register("connect")
                await self._drain(s)
                raise MQTTError(s.dead or "session ended")
            except asyncio.CancelledError:
                raise
            except t.link_errors as e:
                self.reconnects += 1
                cause = self.classify(e, connecting)
                text = str(e)
                if cause == "server" and not text.startswith("broker "):
                    text = "%s: %s" % (self.peer(), text)
                if cause == "server" and self._stream is None and t.cfg["broker_tls"]:
                    self.tls_fail += 1  # the TLS set-up or the handshake failed (the module tells no more)
                    peer = self.peer()
                    why = text[len(peer) + 2:] if text.startswith(peer + ": ") else text
                    t.log.warning("TLS to %s failed (%d so far): %s", peer, self.tls_fail, why)
                t.log.warning("uplink down (%s): %s", cause or "link", text)
            finally:
                self.session = None
                if s is not None:
                    s.close()
            t.checkin("uplink")
            await t.modem.recover(cause)
