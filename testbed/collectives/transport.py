"""TCP connections between emulated GPU hosts, in the style of NCCL's socket transport.

For every directed pair of hosts that exchange data, ``nsocks`` TCP
connections run from the sender's namespace to the receiver's, created by one
process (:mod:`testbed.lab.nssocket`), so the bytes really cross the lab's
shaped links. A message is split into pieces of ``max(64 KiB, size/nsocks)``
dealt round-robin over the connections (NCCL: bandwidth = slowest socket x
sockets). Each connection has a bounded in-flight buffer (NCCL_BUFFSIZE):
the sender waits for the receiver's credit (an ack after it has consumed a
piece) before more than ``buffsize_bytes`` are outstanding, so a long RTT
limits a connection to buffsize/RTT, as in NCCL.

Frames: data ``<u32 transfer id><u32 offset elems><u32 length bytes>`` then
payload; credit ``<u32 bytes>`` on the reverse direction.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple

from testbed.errors import RunError
from testbed.lab.nssocket import ns_socket

__all__ = ["Transport", "PIECE_MIN_BYTES"]

HEADER = struct.Struct("<III")
CREDIT = struct.Struct("<I")
PIECE_MIN_BYTES = 64 * 1024
CONNECT_TIMEOUT_S = 10.0
BUFFER_STEPS = 8  # NCCL_STEPS: the in-flight buffer is used in 8 slots


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    in_flight: int = 0
    waiting: int = 0  # senders waiting for room in the in-flight buffer
    credit: asyncio.Condition = field(default_factory=asyncio.Condition)


class Transport:
    """Connections between hosts; ``deliver(transfer_id, offset_elems, payload)`` on arrival."""

    def __init__(self, nsocks: int = 1, buffsize_bytes: int = 4 * 1024 * 1024):
        if nsocks < 1:
            raise RunError("nsocks must be at least 1")
        self.nsocks = nsocks
        self.buffsize_bytes = buffsize_bytes
        self.conns: Dict[Tuple[str, str], List[_Conn]] = {}
        self._rr: Dict[Tuple[str, str], int] = {}
        self._tasks: List[asyncio.Task] = []
        self._servers: List[socket.socket] = []
        self.deliver: Callable[[int, int, bytes], None] = lambda *_: None
        self.bytes_sent: Dict[Tuple[str, str], int] = {}

    async def connect(self, pairs, hosts) -> None:
        """Open connections for each (src_host, dst_host); ``hosts`` maps name -> Node."""
        loop = asyncio.get_running_loop()
        for src, dst in pairs:
            s_node, d_node = hosts[src], hosts[dst]
            listener = ns_socket(d_node.netns)
            listener.bind((d_node.ip, 0))
            listener.listen(self.nsocks)
            listener.setblocking(False)
            self._servers.append(listener)
            port = listener.getsockname()[1]
            conns = []
            for _ in range(self.nsocks):
                client = ns_socket(s_node.netns)
                client.setblocking(False)
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    await asyncio.wait_for(
                        asyncio.gather(loop.sock_connect(client, (d_node.ip, port)),
                                       self._accept_one(listener, src, dst)),
                        CONNECT_TIMEOUT_S)
                except (OSError, asyncio.TimeoutError) as exc:
                    client.close()
                    raise RunError(f"cannot connect {src} -> {dst} ({d_node.ip}:{port}): {exc!r}") from exc
                reader, writer = await asyncio.open_connection(sock=client)
                conn = _Conn(reader, writer)
                conns.append(conn)
                self._tasks.append(asyncio.ensure_future(self._read_credits(conn)))
            self.conns[(src, dst)] = conns
            self._rr[(src, dst)] = 0
            self.bytes_sent[(src, dst)] = 0
            listener.close()

    async def _accept_one(self, listener: socket.socket, src: str, dst: str) -> None:
        loop = asyncio.get_running_loop()
        sock, _ = await loop.sock_accept(listener)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader, writer = await asyncio.open_connection(sock=sock)
        self._tasks.append(asyncio.ensure_future(self._read_data(reader, writer, src, dst)))

    async def _read_data(self, reader, writer, src: str, dst: str) -> None:
        try:
            while True:
                header = await reader.readexactly(HEADER.size)
                tid, offset, length = HEADER.unpack(header)
                payload = await reader.readexactly(length)
                self.deliver(tid, offset, payload)
                writer.write(CREDIT.pack(length))
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    async def _read_credits(self, conn: _Conn) -> None:
        try:
            while True:
                data = await conn.reader.readexactly(CREDIT.size)
                (n,) = CREDIT.unpack(data)
                conn.in_flight -= n
                if conn.waiting:  # wake a sender only when one waits for room
                    async with conn.credit:
                        conn.credit.notify_all()
        except (asyncio.IncompleteReadError, ConnectionError):
            return

    def pieces(self, nbytes: int, itemsize: int) -> List[Tuple[int, int]]:
        """(offset_bytes, length_bytes) pieces of a message, aligned to elements.

        ``max(64 KiB, size/nsocks)`` as NCCL deals tasks to sockets, but never
        more than one of the NCCL_STEPS (8) slots of the in-flight buffer.
        """
        if nbytes == 0:
            return [(0, 0)]
        size = max(PIECE_MIN_BYTES, -(-nbytes // self.nsocks))
        size = min(size, max(PIECE_MIN_BYTES, self.buffsize_bytes // BUFFER_STEPS))
        size = max(itemsize, size - size % itemsize)
        return [(off, min(size, nbytes - off)) for off in range(0, nbytes, size)]

    async def send(self, src: str, dst: str, tid: int, payload: memoryview, itemsize: int) -> None:
        key = (src, dst)
        conns = self.conns[key]
        pieces = self.pieces(len(payload), itemsize)
        if len(pieces) == 1:  # the common case: no gather, no extra task
            idx = self._rr[key]
            self._rr[key] = (idx + 1) % len(conns)
            await self._send_piece(conns[idx], tid, 0, payload)
        else:
            sends = []
            for off, length in pieces:
                idx = self._rr[key]
                self._rr[key] = (idx + 1) % len(conns)
                sends.append(self._send_piece(conns[idx], tid, off // itemsize, payload[off:off + length]))
            await asyncio.gather(*sends)
        self.bytes_sent[key] += len(payload)

    async def _send_piece(self, conn: _Conn, tid: int, offset_elems: int, piece: memoryview) -> None:
        length = len(piece)
        # a piece larger than the buffer still goes alone, like NCCL's steps
        if not (conn.in_flight == 0 or conn.in_flight + length <= self.buffsize_bytes):
            conn.waiting += 1
            try:
                async with conn.credit:
                    await conn.credit.wait_for(lambda: conn.in_flight == 0 or
                                               conn.in_flight + length <= self.buffsize_bytes)
            finally:
                conn.waiting -= 1
        conn.in_flight += length  # one event loop thread: no race between the check and this
        # header and payload in one write: one send(2) per piece, not two
        conn.writer.write(HEADER.pack(tid, offset_elems, length) + piece)
        await conn.writer.drain()

    async def close(self) -> None:
        for conns in self.conns.values():
            for conn in conns:
                conn.writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for conns in self.conns.values():
            for conn in conns:
                try:
                    await conn.writer.wait_closed()
                except (ConnectionError, OSError):
                    pass
        self.conns.clear()
