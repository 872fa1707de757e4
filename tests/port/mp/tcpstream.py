"""A stream over an asyncio TCP connection with the read/write/close the MQTT session expects of a modem socket."""

import asyncio


class TcpStream:
    def __init__(self, reader, writer):
        self.r, self.w = reader, writer

    async def write(self, data):
        self.w.write(data)
        await self.w.drain()

    async def read(self, n):
        return await self.r.read(n)

    def close(self):
        self.w.close()


async def connect(host, port):
    """A TcpStream to host:port."""
    r, w = await asyncio.open_connection(host, port)
    return TcpStream(r, w)
