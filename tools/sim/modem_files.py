"""The modem simulator's file system: QFUPL, QFLST, QFDEL, QFLDS on UFS (flash, kept) and RAM (lost at restart).

As on Quectel modules: `AT+QFUPL="<name>"[,<size>[,<timeout_s>[,<ackmode>]]]`
answers `CONNECT`, takes exactly <size> raw bytes (or what came before the
timeout), then `+QFUPL: <size>,<checksum>` and `OK`; with ackmode 1 it sends
`A` after every 1024 bytes. The checksum is the XOR of the data's 16-bit
big-endian words, an odd last byte paired with 0x00, in hex without leading
zeros. An existing name gives `+CME ERROR: 407` (delete it first); QFDEL of a
missing one `+CME ERROR: 405`. A bare name or `UFS:` is flash and survives a
module restart; `RAM:` files are lost with it.
"""

import asyncio

UFS_TOTAL = 262144  # bytes of the user file system (EC800M class: a few hundred KB)
RAM_TOTAL = 65536
UPLOAD_DEFAULT_SIZE = 10240
UPLOAD_DEFAULT_TIMEOUT_S = 5
ACK_EVERY = 1024
ERR_NO_FILE = 405
ERR_EXISTS = 407


def checksum(data):
    """The module's upload checksum: XOR of 16-bit big-endian words (odd last byte paired with 0x00)."""
    x = 0
    n = len(data)
    for i in range(0, n - 1, 2):
        x ^= (data[i] << 8) | data[i + 1]
    if n % 2:
        x ^= data[-1] << 8
    return x


def split_name(name):
    """'UFS:ca.pem' / 'ca.pem' -> ('UFS', 'ca.pem'); 'RAM:x' -> ('RAM', 'x')."""
    store, sep, base = name.partition(":")
    if not sep:
        return "UFS", name
    return store.upper(), base


def _match(pattern, name):
    if pattern in ("*", ""):
        return True
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return name == pattern


class FilesMixin:
    """QFUPL, QFLST, QFDEL, QFLDS for ModemSim; `self.files` = {"UFS": {name: bytes}, "RAM": {...}}."""

    def _init_files(self):
        self.files = {"UFS": {}, "RAM": {}}
        self._upload = None

    def _files_restart(self):
        """A module restart: RAM files go, flash files stay, an upload in progress is lost."""
        self.files["RAM"] = {}
        self._upload = None

    def file(self, name):
        """The content of a module file (tests), None if absent."""
        store, base = split_name(name)
        return self.files.get(store, {}).get(base)

    def _store_of(self, name):
        store, base = split_name(name)
        if store not in self.files or not base:
            return None, base
        return self.files[store], base

    async def _at_qfupl(self, kind, args):
        if kind != "set" or not args:
            self._respond(final=self._err(50))
            return
        files, base = self._store_of(args[0])
        if files is None:
            self._respond(final=self._err(50))
            return
        size = int(args[1]) if len(args) > 1 and args[1] else UPLOAD_DEFAULT_SIZE
        timeout = int(args[2]) if len(args) > 2 and args[2] else UPLOAD_DEFAULT_TIMEOUT_S
        ack = int(args[3]) if len(args) > 3 and args[3] else 0
        if base in files:
            self._respond(final=self._err(ERR_EXISTS))
            return
        if size <= 0 or ack not in (0, 1):
            self._respond(final=self._err(50))
            return
        up = {"files": files, "name": base, "size": size, "ack": ack, "data": bytearray(), "gen": self._gen}
        self._upload = up
        self._out(b"\r\nCONNECT\r\n")
        self._upload_need(up)
        up["timer"] = asyncio.ensure_future(self._upload_timeout(up, timeout))

    def _upload_need(self, up):
        left = up["size"] - len(up["data"])
        step = min(left, ACK_EVERY - len(up["data"]) % ACK_EVERY) if up["ack"] else left
        self._data_need = (step, lambda payload: self._upload_data(up, payload))

    def _upload_data(self, up, payload):
        if self._upload is not up:
            return
        up["data"] += payload
        if up["ack"] and len(up["data"]) % ACK_EVERY == 0 and len(up["data"]) < up["size"]:
            self._out(b"A")
        if len(up["data"]) >= up["size"]:
            self._upload_done(up)
        else:
            self._upload_need(up)

    async def _upload_timeout(self, up, seconds):
        await asyncio.sleep(seconds)
        if self._upload is up and up["gen"] == self._gen:
            self._data_need = None  # the time is up: what came is the file
            take = min(len(self._inbuf), up["size"] - len(up["data"]))
            up["data"] += self._inbuf[:take]
            del self._inbuf[:take]
            self._upload_done(up)

    def _upload_done(self, up):
        self._upload = None
        timer = up.get("timer")
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
        data = bytes(up["data"])
        up["files"][up["name"]] = data
        self.stats["files_uploaded"] = self.stats.get("files_uploaded", 0) + 1
        self._respond(["+QFUPL: %d,%x" % (len(data), checksum(data))])

    async def _at_qflst(self, kind, args):
        pattern = args[0] if args else "*"
        store, base = split_name(pattern)
        if store not in self.files:
            self._respond(final=self._err(50))
            return
        lines = ['+QFLST: "%s:%s",%d' % (store, n, len(d)) for n, d in sorted(self.files[store].items())
                 if _match(base, n)]
        if not lines and base not in ("*", ""):
            self._respond(final=self._err(ERR_NO_FILE))
            return
        self._respond(lines)

    async def _at_qfdel(self, kind, args):
        if not args:
            self._respond(final=self._err(50))
            return
        files, base = self._store_of(args[0])
        if files is None:
            self._respond(final=self._err(50))
        elif base == "*":
            files.clear()
            self._respond()
        elif base not in files:
            self._respond(final=self._err(ERR_NO_FILE))
        else:
            del files[base]
            self._respond()

    async def _at_qflds(self, kind, args):
        store = (args[0] if args else "UFS").upper()
        if store not in self.files:
            self._respond(final=self._err(50))
            return
        total = UFS_TOTAL if store == "UFS" else RAM_TOTAL
        used = sum(len(d) for d in self.files[store].values())
        self._respond(["+QFLDS: %d,%d" % (total - used, total)])
