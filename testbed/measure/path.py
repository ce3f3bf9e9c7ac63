"""Hop count and path MTU with TTL-limited and don't-fragment pings.

Hop count: ``ping -n -c 1 -W T -t TTL DST`` for TTL = 1, 2, ...: a router on
the way answers "Time to live exceeded" (its address is recorded), and the
first TTL that draws an echo reply from the destination is ``ttl_hops`` (1 on
a direct link). A hop that stays silent is recorded as ``None``.

Path MTU: ``ping -n -c 1 -W T -M do -s MTU-28 DST`` (20 bytes IPv4 header +
8 bytes ICMP header), binary search between 68 and the MTU of the source
interface towards DST (or the kernel's cached path MTU, if lower). A router's
"Frag needed and DF set (mtu = N)" or the kernel's cached answer "local error:
message too long, mtu=N" jumps straight to N (an upper bound: nothing larger
passes that hop). A probe without any answer is retried ``attempts`` times (it
may have been lost on a lossy link) before it counts as too big.
"""

from __future__ import annotations

import json
from typing import List, Optional

from testbed.errors import ToolError
from testbed.lab.node import Node
from testbed.measure._common import positive_int, positive_number, require_tool, target_ip
from testbed.measure.ping import PingOutput, parse_ping_output, ping_argv

__all__ = ["PathRunner", "IPV4_ICMP_OVERHEAD_BYTES", "MIN_IPV4_MTU"]

IPV4_ICMP_OVERHEAD_BYTES = 28
MIN_IPV4_MTU = 68
_UNREACHABLE_WORDS = ("Unreachable", "unreachable")


class PathRunner:
    """TTL hop count, routers on the way and path MTU (Flent lifecycle)."""

    name = "path"
    tool = "ping"

    def check(self, node: Node) -> None:
        """ping (iputils) and ip (iproute2) must be installed."""
        require_tool("ping", "apt-get install iputils-ping")
        require_tool("ip", "apt-get install iproute2")

    def argv(
        self,
        dst_ip: str,
        *,
        ttl: Optional[int] = None,
        mtu: Optional[int] = None,
        timeout_s: float = 1.0,
    ) -> list:
        """One probe: TTL-limited (``ttl``) and/or don't-fragment of ``mtu`` bytes."""
        size = None if mtu is None else mtu - IPV4_ICMP_OVERHEAD_BYTES
        return ping_argv(dst_ip, count=1, timeout_s=timeout_s, size_bytes=size, ttl=ttl,
                         dont_fragment=mtu is not None)

    def parse(self, text: str) -> dict:
        """Classify one probe's output.

        ``{"status": "reply"|"ttl_exceeded"|"too_big"|"unreachable"|"no_answer",
        "from": address or None, "mtu": N or None, "message": str or None}``.
        """
        return self._classify(parse_ping_output(text))

    @staticmethod
    def _classify(out: PingOutput) -> dict:
        replies = [r for r in out.replies if not r.duplicate]
        if replies:
            return {"status": "reply", "from": replies[0].from_addr, "mtu": None,
                    "message": None}
        for error in out.errors:
            text = error.message
            if "Time to live exceeded" in text:
                status = "ttl_exceeded"
            elif error.mtu is not None or "message too long" in text or "Frag needed" in text:
                status = "too_big"
            elif any(word in text for word in _UNREACHABLE_WORDS):
                status = "unreachable"
            else:
                continue
            return {"status": status, "from": error.from_addr, "mtu": error.mtu,
                    "message": text}
        if out.sent is None:
            detail = "; ".join(out.diagnostics) or "no statistics line in its output"
            raise ToolError(f"ping: {detail}")
        return {"status": "no_answer", "from": None, "mtu": None, "message": None}

    def _probe(self, src: Node, ip: str, *, ttl: Optional[int] = None,
               mtu: Optional[int] = None, timeout_s: float, attempts: int) -> dict:
        result = {"status": "no_answer", "from": None, "mtu": None, "message": None}
        for _ in range(attempts):
            proc = src.run(self.argv(ip, ttl=ttl, mtu=mtu, timeout_s=timeout_s),
                           timeout_s=timeout_s + 10.0, check=False)
            if proc.returncode not in (0, 1):
                lines = (proc.stderr or proc.stdout).strip().splitlines()
                raise ToolError(f"ping {src.name} -> {ip} exited {proc.returncode}: "
                                + (lines[-1] if lines else "no message"))
            result = self.parse(proc.stdout + "\n" + proc.stderr)
            if result["status"] != "no_answer":
                return result
        return result

    def hops(self, src: Node, dst: Node, *, max_hops: int = 30, timeout_s: float = 1.0,
             attempts: int = 2) -> dict:
        """``{"ttl_hops": n, "routers": [addr or None, ...]}`` (n - 1 routers)."""
        positive_int("path.max_hops", max_hops, maximum=255)
        positive_number("path.timeout_s", timeout_s)
        positive_int("path.attempts", attempts, maximum=10)
        ip = target_ip(dst)
        self.check(src)
        routers: List[Optional[str]] = []
        for ttl in range(1, max_hops + 1):
            result = self._probe(src, ip, ttl=ttl, timeout_s=timeout_s, attempts=attempts)
            if result["status"] == "reply":
                return {"ttl_hops": ttl, "routers": routers}
            if result["status"] == "unreachable":
                raise ToolError(f"path {src.name} -> {dst.name} ({ip}): {result['message']}"
                                f" from {result['from']} at TTL {ttl}")
            routers.append(result["from"] if result["status"] == "ttl_exceeded" else None)
        raise ToolError(f"path {src.name} -> {dst.name} ({ip}): not reached within "
                        f"{max_hops} hops")

    def interface_mtu(self, src: Node, dst_ip: str) -> int:
        """Upper bound for the search: the MTU ``src`` sends with towards ``dst_ip``.

        That is the MTU of the outgoing interface (``ip -json route get`` then
        ``ip -json link show``), or the kernel's cached path MTU for the route
        when it is lower: a don't-fragment probe above the cached value only
        draws a local "message too long" after the full reply timeout.
        """
        route = src.run(["ip", "-json", "route", "get", dst_ip], timeout_s=5.0)
        try:
            entry = json.loads(route.stdout)[0]
            link = src.run(["ip", "-json", "link", "show", "dev", entry["dev"]], timeout_s=5.0)
            mtu = int(json.loads(link.stdout)[0]["mtu"])
            for metric in entry.get("metrics", []):
                if isinstance(metric, dict) and "mtu" in metric:
                    mtu = min(mtu, int(metric["mtu"]))
            return mtu
        except (json.JSONDecodeError, IndexError, KeyError, TypeError, ValueError) as exc:
            raise ToolError(f"{src.name}: cannot read the MTU towards {dst_ip}: {exc}") from exc

    def path_mtu(self, src: Node, dst: Node, *, timeout_s: float = 1.0,
                 attempts: int = 2) -> dict:
        """``{"path_mtu": n}``: the largest packet that reaches ``dst`` unfragmented."""
        positive_number("path.timeout_s", timeout_s)
        positive_int("path.attempts", attempts, maximum=10)
        ip = target_ip(dst)
        self.check(src)
        low, high = MIN_IPV4_MTU, self.interface_mtu(src, ip)
        low_verified = False
        candidate = high
        while True:
            result = self._probe(src, ip, mtu=candidate, timeout_s=timeout_s,
                                 attempts=attempts)
            status = result["status"]
            if status == "reply":
                low, low_verified = candidate, True
            elif status == "unreachable":
                raise ToolError(f"path MTU {src.name} -> {dst.name} ({ip}): "
                                f"{result['message']} from {result['from']}")
            elif status == "ttl_exceeded":
                raise ToolError(f"path MTU {src.name} -> {dst.name} ({ip}): "
                                f"TTL exceeded at {result['from']} (routing loop?)")
            else:  # too_big or no_answer
                high = candidate - 1
                hint = result["mtu"]
                if status == "too_big" and hint is not None and low <= hint < candidate:
                    high = hint  # the reported next-hop MTU bounds the path MTU
            if low >= high:
                break
            candidate = high if status == "too_big" and result["mtu"] == high else (
                (low + high + 1) // 2
            )
        if not low_verified:
            result = self._probe(src, ip, mtu=low, timeout_s=timeout_s, attempts=attempts)
            if result["status"] != "reply":
                raise ToolError(f"path MTU {src.name} -> {dst.name} ({ip}): no reply even "
                                f"to a {low}-byte probe ({result['status']})")
        return {"path_mtu": low}

    def run(self, src: Node, dst: Node, *, max_hops: int = 30, timeout_s: float = 1.0,
            attempts: int = 2) -> dict:
        """``{"ttl_hops", "routers", "path_mtu"}`` from ``src`` to ``dst``."""
        result = self.hops(src, dst, max_hops=max_hops, timeout_s=timeout_s,
                           attempts=attempts)
        result.update(self.path_mtu(src, dst, timeout_s=timeout_s, attempts=attempts))
        return result
