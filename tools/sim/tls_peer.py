"""A TLS echo server on loopback (a thread per connection) for the modem simulator's TLS tests and the bench.

    srv = TlsEcho(cert, key, ca=None, require_client=False)   # serves at srv.port
    srv.sni        # server names the clients sent (None when none was sent)
    srv.failures   # handshake errors seen on the server's side
    srv.peers      # subject CNs of verified client certificates
    srv.wait_handshakes(n)   # until the server has finished n handshakes (the client may finish first)
    srv.close_all(); srv.stop()

Bounded everywhere: accept and receive time out every 0.2 s so stop() ends it.
"""

import socket
import ssl
import threading

LOOPBACK = "127.0.0.1"


class TlsEcho:
    def __init__(self, cert, key, ca=None, require_client=False, host=LOOPBACK):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        if ca is not None:
            ctx.load_verify_locations(str(ca))
            ctx.verify_mode = ssl.CERT_REQUIRED if require_client else ssl.CERT_OPTIONAL
        self.sni = []
        self.failures = []
        self.peers = []
        self.handshakes = 0
        self._done = threading.Condition()
        ctx.sni_callback = lambda sslobj, name, c: self.sni.append(name)
        self.ctx = ctx
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind((host, 0))
        self.srv.listen(8)
        self.srv.settimeout(0.2)
        self.port = self.srv.getsockname()[1]
        self.conns = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, name="tls echo", daemon=True)]
        self._threads[0].start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                raw, _ = self.srv.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(raw,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, raw):
        raw.settimeout(5)
        try:
            c = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.failures.append(str(e))
            raw.close()
            return
        peer = c.getpeercert()
        if peer:
            self.peers.append(dict(x[0] for x in peer["subject"]).get("commonName"))
        self.conns.append(c)
        with self._done:
            self.handshakes += 1
            self._done.notify_all()
        c.settimeout(0.2)
        while not self._stop.is_set():
            try:
                d = c.recv(65536)
            except (TimeoutError, socket.timeout):
                continue
            except (ssl.SSLError, OSError):
                return
            if not d:
                return
            try:
                c.sendall(d)
            except (ssl.SSLError, OSError):
                return

    def wait_handshakes(self, n, timeout=5.0):
        """True once the server side has completed `n` handshakes in all (bounded by `timeout` seconds)."""
        with self._done:
            return self._done.wait_for(lambda: self.handshakes >= n, timeout)

    def close_all(self):
        """Close every accepted connection (the peer closes: the module reports it)."""
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        self.conns = []

    def stop(self):
        self._stop.set()
        self.srv.close()
        self.close_all()
        for t in self._threads:
            t.join(5)
