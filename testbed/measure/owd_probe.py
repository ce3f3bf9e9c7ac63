"""Timestamped UDP probes for one-way delay: ``python -m testbed.measure.owd_probe``.

Two subcommands, each run inside a lab node's namespace:

``recv --port P --count N --interval-ms I [--bind ADDR] [--grace-ms G] [--start-timeout-ms T]``
    Binds a UDP socket, prints ``ready`` on its own line, then records every
    probe's arrival time. It exits by itself once all ``N`` probes arrived, or
    ``G`` ms after the last probe was due (extrapolated from the highest
    sequence number seen), or -- if nothing arrives -- ``T`` ms plus the
    whole schedule after it became ready. It then prints one JSON document
    (see :func:`analyze`).

``send --dst ADDR --port P --count N --interval-ms I [--size-bytes S]``
    Sends ``N`` probes on an absolute schedule (probe ``i`` at start +
    ``i * I``) and prints ``{"sent": n, "send_errors": k, "duration_s": t}``.

A probe's UDP payload is ``size_bytes`` long (at least 20) and starts with
``b"TBOW"``, the sequence number, the count and the send time from
``clock_gettime_ns(CLOCK_MONOTONIC)``, all big-endian. Network namespaces share
the monotonic clock, so ``receive time - send time`` is the one-way delay.

The receive time is the kernel's (``SO_TIMESTAMPNS``: stamped when the packet
reached the socket), not the moment this receiver woke to read it: a receiver
woken late (a loaded machine, a VM without KVM: milliseconds) would add its
own lateness to every delay and to the jitter. The kernel stamps with the
real-time clock; each stamp is moved onto the monotonic clock by the offset
between the two (``ClockOffset``). That offset is read as a monotonic reading,
a real-time one and a monotonic one again, and used only from a tight
bracket: a receiver preempted between two reads would otherwise carry the
preemption into the offset, and a zero-delay probe would arrive before it was
sent (CI saw -0.045 ms). The offset is constant unless the real-time clock is
stepped; a step is taken up at the next tight bracket. Where a packet carries
no stamp the receiver's own reading stands in, and the result says which
(``receive_stamp``: ``kernel``, ``user`` or ``mixed``; absent when no probe
arrived). The send time is taken just before ``sendto``.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from testbed.clocks import SO_TIMESTAMPNS, ClockOffset
from testbed.measure.stats import rfc3550_jitter, summarize

__all__ = ["HEADER", "MAGIC", "ClockOffset", "encode_probe", "decode_probe", "analyze", "main"]

MAGIC = b"TBOW"
HEADER = struct.Struct("!4sIIQ")  # magic, seq, count, send_ns
_CLOCK = time.CLOCK_MONOTONIC
_TIMESPEC = struct.Struct("@qq")  # struct timespec on a 64-bit kernel: tv_sec, tv_nsec
_CMSG_BYTES = socket.CMSG_SPACE(_TIMESPEC.size)


def _now_ns() -> int:
    return time.clock_gettime_ns(_CLOCK)


def kernel_stamp_ns(ancdata) -> Optional[int]:
    """The kernel's receive time (real-time clock, ns) in ``recvmsg`` ancillary data, or None."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(data)
            return sec * 1_000_000_000 + nsec
    return None



def receive_time_ns(ancdata, mono: Optional[int] = None,
                    offset: Optional[ClockOffset] = None) -> Tuple[int, bool]:
    """(receive time on the monotonic clock, whether the kernel stamped it).

    The kernel's real-time stamp less the real-time minus monotonic offset
    (``offset``, else a fresh ``ClockOffset``); without a stamp, ``mono`` (the
    monotonic clock just read, else read here).
    """
    stamp = kernel_stamp_ns(ancdata)
    if stamp is None:
        return (_now_ns() if mono is None else mono), False
    return stamp - (offset or ClockOffset()).read(), True


def encode_probe(seq: int, count: int, send_ns: int, size_bytes: int) -> bytes:
    """One probe payload, zero-padded to ``size_bytes``."""
    if size_bytes < HEADER.size:
        raise ValueError(f"size_bytes must be at least {HEADER.size}")
    return HEADER.pack(MAGIC, seq, count, send_ns).ljust(size_bytes, b"\0")


def decode_probe(payload: bytes) -> Optional[Tuple[int, int, int]]:
    """``(seq, count, send_ns)`` or None if the payload is not one of our probes."""
    if len(payload) < HEADER.size:
        return None
    magic, seq, count, send_ns = HEADER.unpack_from(payload)
    if magic != MAGIC:
        return None
    return seq, count, send_ns


def analyze(arrivals: Sequence[Tuple[int, int, int]], count: int) -> Dict:
    """Summarise ``(seq, send_ns, recv_ns)`` arrivals (in arrival order).

    * ``packets``: every arrival as ``{"seq", "owd_ms"}``, duplicates included;
    * ``samples_ms``: the one-way delay of each probe's first arrival;
    * ``one_way_delay_ms``: :func:`summarize` of ``samples_ms``;
    * ``jitter_ms``: RFC 3550 jitter over those transit times, arrival order
      (None with fewer than two);
    * ``stdev_ms``: the standard deviation of ``samples_ms``;
    * ``loss_pct``: probes never received, percent of ``count``;
    * ``reordered``: first arrivals whose seq is lower than one already seen;
    * ``duplicates``: arrivals of a seq already received.
    """
    seen: set = set()
    highest = -1
    reordered = 0
    duplicates = 0
    packets: List[Dict] = []
    samples_ms: List[float] = []
    for seq, send_ns, recv_ns in arrivals:
        owd_ms = (recv_ns - send_ns) / 1e6
        packets.append({"seq": seq, "owd_ms": owd_ms})
        if seq in seen:
            duplicates += 1
            continue
        seen.add(seq)
        if seq < highest:
            reordered += 1
        highest = max(highest, seq)
        samples_ms.append(owd_ms)
    summary = summarize(samples_ms)
    received = len(seen)
    lost = max(count - received, 0)
    return {
        "count": count,
        "received": received,
        "loss_pct": 100.0 * lost / count if count else 0.0,
        "reordered": reordered,
        "duplicates": duplicates,
        "one_way_delay_ms": summary,
        "jitter_ms": rfc3550_jitter(samples_ms) if len(samples_ms) >= 2 else None,
        "stdev_ms": summary["stdev"],
        "samples_ms": samples_ms,
        "packets": packets,
    }


def _receive(args: argparse.Namespace) -> Dict:
    interval_ns = int(args.interval_ms * 1e6)
    grace_ns = int(args.grace_ms * 1e6)
    arrivals: List[Tuple[int, int, int]] = []
    seen: set = set()
    foreign = 0
    highest = -1
    stamped = unstamped = 0
    clock_offset = ClockOffset()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            pass  # no kernel stamps: every receive time is the receiver's own
        sock.bind((args.bind, args.port))
        print("ready", flush=True)
        deadline_ns = (
            _now_ns()
            + int(args.start_timeout_ms * 1e6)
            + (args.count - 1) * interval_ns
            + grace_ns
        )
        # With --stdin-eof the one who started us closes our stdin once the sender has
        # finished: from then on at most the grace period is left, however long the
        # start-up wait was.
        stdin_fd = sys.stdin.fileno() if args.stdin_eof else None
        watch = [sock.fileno()] + ([stdin_fd] if stdin_fd is not None else [])
        while len(seen) < args.count:
            remaining_ns = deadline_ns - _now_ns()
            if remaining_ns <= 0:
                break
            readable, _, _ = select.select(watch, [], [], remaining_ns / 1e9)
            if not readable:
                break
            if stdin_fd in readable and not os.read(stdin_fd, 4096):
                watch.remove(stdin_fd)
                deadline_ns = min(deadline_ns, _now_ns() + grace_ns)
            if sock.fileno() not in readable:
                continue
            payload, ancdata, _flags, _addr = sock.recvmsg(65535, _CMSG_BYTES)
            now_ns = _now_ns()
            recv_ns, by_kernel = receive_time_ns(ancdata, now_ns, clock_offset)
            probe = decode_probe(payload)
            if probe is None or probe[0] >= args.count:
                foreign += 1
                continue
            seq, _count, send_ns = probe
            arrivals.append((seq, send_ns, recv_ns))
            stamped += by_kernel
            unstamped += not by_kernel
            seen.add(seq)
            highest = max(highest, seq)
            deadline_ns = now_ns + (args.count - 1 - highest) * interval_ns + grace_ns
    result = analyze(arrivals, args.count)
    result["foreign"] = foreign
    if arrivals:  # nothing received: no one's clock to name
        result["receive_stamp"] = ("kernel" if not unstamped else "user" if not stamped else "mixed")
    result["interval_ms"] = args.interval_ms
    return result


def _send(args: argparse.Namespace) -> Dict:
    interval_ns = int(args.interval_ms * 1e6)
    buffer = bytearray(encode_probe(0, args.count, 0, args.size_bytes))
    sent = 0
    errors = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        start_ns = _now_ns()
        for seq in range(args.count):
            due_ns = start_ns + seq * interval_ns
            wait_ns = due_ns - _now_ns()
            if wait_ns > 0:
                time.sleep(wait_ns / 1e9)
            HEADER.pack_into(buffer, 0, MAGIC, seq, args.count, _now_ns())
            try:
                sock.sendto(buffer, (args.dst, args.port))
                sent += 1
            except OSError:
                errors += 1
        duration_s = (_now_ns() - start_ns) / 1e9
        # Idle for one more interval (at most 100 ms) as between probes: exiting
        # at once keeps this CPU busy with interpreter teardown and delays the
        # receiver's wake-up, inflating the last probe's delay by milliseconds.
        time.sleep(min(interval_ns / 1e9, 0.1))
    return {"sent": sent, "send_errors": errors, "duration_s": duration_s}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m testbed.measure.owd_probe")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("recv", "send"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--port", type=int, required=True)
        cmd.add_argument("--count", type=int, required=True)
        cmd.add_argument("--interval-ms", type=float, required=True)
    recv = sub.choices["recv"]
    recv.add_argument("--bind", default="0.0.0.0")
    recv.add_argument("--grace-ms", type=float, default=1000.0)
    recv.add_argument("--start-timeout-ms", type=float, default=5000.0)
    recv.add_argument("--stdin-eof", action="store_true",
                      help="EOF on stdin means the sender finished: wait at most grace-ms more")
    send = sub.choices["send"]
    send.add_argument("--dst", required=True)
    send.add_argument("--size-bytes", type=int, default=64)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; exit 0 on success, 2 on bad arguments (argparse)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.count < 1 or args.interval_ms <= 0 or not 0 < args.port < 65536:
        parser.error("count must be >= 1, interval-ms > 0, port in 1..65535")
    if args.command == "send" and args.size_bytes < HEADER.size:
        parser.error(f"size-bytes must be at least {HEADER.size}")
    result = _receive(args) if args.command == "recv" else _send(args)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
