"""What every simulated UART peer shares: an asyncio TCP server (plus an optional control port) on its own thread.

The firmware's TcpUart dials the server; tests drive the simulator through
thread-safe methods, the CLI through the control port.
"""

import asyncio
import json
import signal
import threading


class SimPeer:
    """Subclasses set `host` and `_servers = []`, and provide `_client`, `command(req)` and `_close_extra`."""

    thread_name = "sim"
    port = None
    control_port = None
    _loop = None
    _thread = None
    _writer = None

    def start(self, port=None, control_port=None):
        """Listen on 127.0.0.1:port (0/None: any free port) in a background thread; return the port."""
        ready = threading.Event()
        errors = []

        def run():
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self._open(port or 0, control_port))
            except OSError as e:
                errors.append(e)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._close())
            self._loop.close()

        self._thread = threading.Thread(target=run, name=self.thread_name, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise TimeoutError("%s did not start" % self.thread_name)
        if errors:
            raise errors[0]
        return self.port

    def serve(self, port=None, control_port=None):
        """CLI mode: start, announce the ports on stdout, run until SIGINT or SIGTERM; returns the exit status."""
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        port = self.start(port=port, control_port=control_port)
        if self.control_port is not None:
            print("CONTROL port=%d" % self.control_port, flush=True)
        print("READY port=%d" % port, flush=True)
        while not stop.wait(0.5):
            pass
        self.stop()
        return 0

    def stop(self):
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._thread = None

    async def _open(self, port, control_port):
        srv = await asyncio.start_server(self._client, self.host, port)
        self._servers.append(srv)
        self.port = srv.sockets[0].getsockname()[1]
        if control_port is not None:
            csrv = await asyncio.start_server(self._control, self.host, control_port)
            self._servers.append(csrv)
            self.control_port = csrv.sockets[0].getsockname()[1]

    async def _control(self, reader, writer):
        """JSON lines in, JSON lines out: each request goes to the subclass's command(req) -> dict."""
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    answer = self.command(json.loads(line))
                except (ValueError, KeyError, TypeError) as e:
                    answer = {"ok": False, "error": str(e)}
                writer.write((json.dumps(answer) + "\n").encode())
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def _close_extra(self):
        pass

    async def _close(self):
        for s in self._servers:
            s.close()
        self._close_extra()
        if self._writer is not None:
            self._writer.close()
        tasks = [t for t in asyncio.all_tasks(self._loop) if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
