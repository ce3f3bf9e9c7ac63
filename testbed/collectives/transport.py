"""TCP connections between emulated GPU hosts, in the style of NCCL's socket transport.

For every directed pair of hosts that exchange data, ``nsocks`` TCP
connections run from the sender's namespace to the receiver's, created by one
process (:mod:`testbed.lab.nssocket`), so the bytes really cross the lab's
shaped links. A message is split into pieces of ``max(64 KiB, size/nsocks)``
dealt round-robin over the connections (NCCL: bandwidth = slowest socket x
sockets). Each connection has a bounded in-flight buffer (NCCL_BUFFSIZE):
the sender waits for the receiver's credit before more than ``buffsize_bytes``
are outstanding, so a long RTT limits a connection to about buffsize/RTT, as
in NCCL. Like NCCL, which frees its buffer one of ``NCCL_STEPS`` (8) slots at
a time, the receiver returns credit once it has consumed a slot's worth
(buffsize/8; every piece when a piece is nearly the whole buffer), not for
every piece: one credit write per slot instead of one per message.

Frames: data ``<u32 transfer id><u32 offset elems><u32 length bytes>`` then
payload; credit ``<u32 bytes>`` on the reverse direction.

Both ends are asyncio protocols parsing frames in ``data_received`` (no
coroutine per read), and a piece that has credit is written at once
(:meth:`Transport.send_nowait`) without a task: the engine is one process for
every rank, and at small sizes its per-message CPU is what it adds to the
links' time.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Callable, Dict, List, Optional, Tuple

from testbed.errors import RunError
from testbed.lab.nssocket import ns_socket

__all__ = ["Transport", "PIECE_MIN_BYTES", "credit_batch_bytes"]

HEADER = struct.Struct("<III")
CREDIT = struct.Struct("<I")
PIECE_MIN_BYTES = 64 * 1024
CONNECT_TIMEOUT_S = 10.0
BUFFER_STEPS = 8  # NCCL_STEPS: the in-flight buffer is used in 8 slots
HIGH_WATER_BYTES = 1 << 20  # asyncio write buffer above which a sender waits (drain)


def _piece_max(buffsize_bytes: int) -> int:
    return max(PIECE_MIN_BYTES, buffsize_bytes // BUFFER_STEPS)


def credit_batch_bytes(buffsize_bytes: int) -> int:
    """Bytes the receiver consumes before it returns credit: one NCCL slot.

    Never more than ``buffsize - largest piece + 1``: a sender waits only when
    more than ``buffsize - piece`` bytes are outstanding, and once they have
    all arrived the receiver must owe at least one batch, or both would wait
    for ever. With small buffers that is 1: credit for every piece.
    """
    return max(1, min(buffsize_bytes // BUFFER_STEPS, buffsize_bytes - _piece_max(buffsize_bytes) + 1))


class _Sender(asyncio.Protocol):
    """The sending end of one connection: reads credits, tracks what is in flight."""

    def __init__(self) -> None:
        self.transport: Optional[asyncio.Transport] = None
        self.in_flight = 0
        self.waiters: List[asyncio.Future] = []  # senders waiting for credit or for the buffer to drain
        self.paused = False
        self.lost: Optional[BaseException] = None
        self._buf = bytearray()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        usable = len(buf) - len(buf) % CREDIT.size
        if usable:
            for (n,) in CREDIT.iter_unpack(bytes(buf[:usable])):
                self.in_flight -= n
            del buf[:usable]
            self._wake()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake()

    def connection_lost(self, exc) -> None:
        self.lost = exc or ConnectionResetError("connection closed")
        self._wake()

    def _wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def check(self) -> None:
        if self.lost is not None:
            raise RunError(f"collective connection lost: {self.lost!r}")

    def has_room(self, length: int, buffsize: int) -> bool:
        # a piece larger than the buffer still goes alone, like NCCL's steps
        return not self.paused and (self.in_flight == 0 or self.in_flight + length <= buffsize)

    def write(self, tid: int, offset_elems: int, piece) -> None:
        self.in_flight += len(piece)  # one event loop thread: no race between the check and this
        # header and payload in one write: one send(2) per piece, not two
        self.transport.write(HEADER.pack(tid, offset_elems, len(piece)) + piece)

    async def wait(self) -> None:
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        await fut


class _Receiver(asyncio.Protocol):
    """The receiving end: parses data frames, delivers them, returns credit per batch."""

    def __init__(self, owner: "Transport") -> None:
        self.owner = owner
        self.transport: Optional[asyncio.Transport] = None
        self._buf = bytearray()
        self._owed = 0  # consumed bytes not yet credited
        self._batch = credit_batch_bytes(owner.buffsize_bytes)

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos, end = 0, len(buf)
        deliver = self.owner.deliver
        with memoryview(buf) as view:  # released before the buffer is trimmed
            while end - pos >= HEADER.size:
                tid, offset, length = HEADER.unpack_from(view, pos)
                stop = pos + HEADER.size + length
                if stop > end:
                    break
                deliver(tid, offset, bytes(view[pos + HEADER.size:stop]))
                self._owed += length
                pos = stop
        if pos:
            del buf[:pos]
        if self._owed >= self._batch:
            self.transport.write(CREDIT.pack(self._owed))
            self._owed = 0

    def connection_lost(self, exc) -> None:
        self.transport = None


class Transport:
    """Connections between hosts; ``deliver(transfer_id, offset_elems, payload)`` on arrival."""

    def __init__(self, nsocks: int = 1, buffsize_bytes: int = 4 * 1024 * 1024,
                 cc: Optional[str] = None):
        if nsocks < 1:
            raise RunError("nsocks must be at least 1")
        self.nsocks = nsocks
        self.cc = cc  # the senders' congestion control (TCP_CONGESTION); None: the host's default
        self.buffsize_bytes = buffsize_bytes
        # the largest message pieces() leaves whole: with several sockets anything above
        # 64 KiB is dealt over them; with one, up to a slot of the buffer
        self._whole_max = PIECE_MIN_BYTES if nsocks > 1 else _piece_max(buffsize_bytes)
        self.conns: Dict[Tuple[str, str], List[_Sender]] = {}
        self._receivers: List[_Receiver] = []
        self._rr: Dict[Tuple[str, str], int] = {}
        self.deliver: Callable[[int, int, bytes], None] = lambda *_: None
        self.bytes_sent: Dict[Tuple[str, str], int] = {}

    async def connect(self, pairs, hosts) -> None:
        """Open connections for each (src_host, dst_host); ``hosts`` maps name -> Node."""
        loop = asyncio.get_running_loop()
        for src, dst in pairs:
            s_node, d_node = hosts[src], hosts[dst]
            listener = ns_socket(d_node.netns)
            try:
                listener.bind((d_node.ip, 0))
                listener.listen(self.nsocks)
                listener.setblocking(False)
                port = listener.getsockname()[1]
                conns = []
                for _ in range(self.nsocks):
                    client = ns_socket(s_node.netns)
                    client.setblocking(False)
                    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    if self.cc:
                        try:
                            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, self.cc.encode())
                        except OSError as exc:
                            client.close()
                            raise RunError(f"congestion control {self.cc!r} on {src}: {exc.strerror} "
                                           f"(see /proc/sys/net/ipv4/tcp_available_congestion_control)") from exc
                    try:
                        _, accepted = await asyncio.wait_for(
                            asyncio.gather(loop.sock_connect(client, (d_node.ip, port)),
                                           loop.sock_accept(listener)),
                            CONNECT_TIMEOUT_S)
                    except (OSError, asyncio.TimeoutError) as exc:
                        client.close()
                        raise RunError(f"cannot connect {src} -> {dst} ({d_node.ip}:{port}): {exc!r}") from exc
                    server_sock = accepted[0]
                    server_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    _, receiver = await loop.connect_accepted_socket(lambda: _Receiver(self), server_sock)
                    self._receivers.append(receiver)
                    _, sender = await loop.create_connection(_Sender, sock=client)
                    sender.transport.set_write_buffer_limits(high=HIGH_WATER_BYTES)
                    conns.append(sender)
            finally:
                listener.close()
            self.conns[(src, dst)] = conns
            self._rr[(src, dst)] = 0
            self.bytes_sent[(src, dst)] = 0

    def pieces(self, nbytes: int, itemsize: int) -> List[Tuple[int, int]]:
        """(offset_bytes, length_bytes) pieces of a message, aligned to elements.

        ``max(64 KiB, size/nsocks)`` as NCCL deals tasks to sockets, but never
        more than one of the NCCL_STEPS (8) slots of the in-flight buffer.
        """
        if nbytes == 0:
            return [(0, 0)]
        size = max(PIECE_MIN_BYTES, -(-nbytes // self.nsocks))
        size = min(size, _piece_max(self.buffsize_bytes))
        size = max(itemsize, size - size % itemsize)
        return [(off, min(size, nbytes - off)) for off in range(0, nbytes, size)]

    def _next(self, key) -> _Sender:
        conns = self.conns[key]
        idx = self._rr[key]
        self._rr[key] = (idx + 1) % len(conns)
        return conns[idx]

    def send_nowait(self, src: str, dst: str, tid: int, payload: memoryview, itemsize: int) -> bool:
        """Write a one-piece message at once if its connection has room; False if it must wait.

        The common case (small messages, credit available) costs one write and
        no task; otherwise :meth:`send` is the way.
        """
        key = (src, dst)
        length = len(payload)
        if length > self._whole_max:
            return False  # pieces() would cut it
        conns, idx = self.conns[key], self._rr[key]
        conn = conns[idx]
        conn.check()
        if not conn.has_room(length, self.buffsize_bytes):
            return False
        self._rr[key] = (idx + 1) % len(conns)
        conn.write(tid, 0, payload)
        self.bytes_sent[key] += length
        return True

    async def send(self, src: str, dst: str, tid: int, payload: memoryview, itemsize: int) -> None:
        """Send a message in pieces, each connection's pieces in order, the connections at once."""
        key = (src, dst)
        per_conn: Dict[int, Tuple[_Sender, List[Tuple[int, int]]]] = {}
        for off, length in self.pieces(len(payload), itemsize):
            conn = self._next(key)
            per_conn.setdefault(id(conn), (conn, []))[1].append((off, length))
        await asyncio.gather(*(self._send_pieces(conn, tid, payload, itemsize, pieces)
                               for conn, pieces in per_conn.values()))
        self.bytes_sent[key] += len(payload)

    async def _send_pieces(self, conn: _Sender, tid: int, payload: memoryview, itemsize: int,
                           pieces: List[Tuple[int, int]]) -> None:
        for off, length in pieces:
            while True:
                conn.check()
                if conn.has_room(length, self.buffsize_bytes):
                    break
                await conn.wait()
            conn.write(tid, off // itemsize, payload[off:off + length])

    async def close(self) -> None:
        transports = [c.transport for conns in self.conns.values() for c in conns]
        transports += [r.transport for r in self._receivers]
        for t in transports:
            if t is not None:
                t.close()
        await asyncio.sleep(0)  # let connection_lost run
        self.conns.clear()
        self._receivers.clear()
