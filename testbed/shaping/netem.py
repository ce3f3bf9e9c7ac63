"""The netem delay backend: delay, jitter, loss, duplicate, corrupt, reorder in the kernel.

One netem qdisc per impaired direction, on the EGRESS interface of the sending
end: the leaf of htb class 1:1 when the profile has a rate (Mininet's TCLink
arrangement, see :mod:`testbed.shaping.htb`), else the root qdisc.

The request is built here, once, in the kernel's own units, and sent through a
pyroute2 socket (``IPRoute`` / ``NetNS``) as one ``RTM_NEWQDISC`` message:

* delay and jitter: ``struct tc_netem_qopt`` carries them in psched ticks
  (64 ns, ``PSCHED_SHIFT`` = 6) for old kernels, and ``TCA_NETEM_LATENCY64`` /
  ``TCA_NETEM_JITTER64`` carry the exact nanoseconds that kernels >= 4.15 use;
* probabilities: u32 fractions of ``0xFFFFFFFF``, rounded like iproute2's
  ``set_percent`` (``rint(fraction * UINT32_MAX)``);
* Gilbert-Elliott loss: ``TCA_NETEM_LOSS`` (nested) holding ``NETEM_LOSS_GE``
  = ``struct tc_netem_gemodel {p, r, h, k1}`` where ``h`` is the probability a
  packet gets through in the bad state and ``k1 = 1 - k`` the loss probability
  in the good state (tc's ``loss gemodel p r 1-h 1-k`` flips ``1-h`` back to
  ``h`` before sending; :meth:`LinkProfile.gilbert_elliott_params` already
  gives ``h`` and ``k``);
* delay distribution: ``TCA_NETEM_DELAY_DIST``, 4096 signed 16-bit samples of
  the inverse CDF scaled by ``NETEM_DIST_SCALE`` (8192). The tables are
  generated in Python with the NISTnet algorithm iproute2 uses to build
  ``normal.dist``, ``pareto.dist`` and ``paretonormal.dist`` (netem/normal.c,
  pareto.c, paretonormal.c); they match iproute2's files value for value.
  ``uniform`` is netem's built-in default and sends no table.

pyroute2's ``sched_netem`` knows neither the loss models nor the distribution
table nor the 64-bit times, and ``IPRoute.tc()`` always rebuilds the options
through that plugin, so this module carries its own message class,
:class:`NetemQdiscMsg` -- pyroute2's ``tcmsg`` header and nla machinery, with
the complete netem attribute table -- and sends it with ``nlm_request``.

Jitter semantics (netem's): with ``uniform`` the delay is drawn from
``[delay - jitter, delay + jitter)``; with a table, ``jitter`` is the standard
deviation and the draw is ``delay + jitter * t / 8192`` (``t`` clipped to
+-4 jitter). ``correlation_pct`` is netem's delay correlation (each draw mixes
in the previous one); netem's correlated generator is known to narrow the
spread of the resulting delays.

Keeping a flow in order (our contract: jitter never reorders unless
``reorder_pct`` asks). netem queues packets in a "tfifo" sorted by their time
to send, so with jitter a later packet drawing a smaller delay overtakes an
earlier one. What the kernel offers, read in Linux 6.x ``sch_netem.c``:

* a child ``pfifo`` no longer helps: since Linux 3.3 netem keeps its tfifo
  internally and hands packets to a child qdisc only once they are due, i.e.
  already reordered (the old "add a pfifo under netem" advice predates this);
* a netem ``rate`` does: when ``q->rate`` is set, ``netem_enqueue`` takes the
  latest time to send already queued (``last``) as the reference and computes
  ``time_to_send = max(now + delay, last) + len / rate``, so times never
  decrease and the tfifo stays first-in first-out.

So whenever ``jitter_ms > 0`` this backend also sets netem's rate to
:data:`FIFO_RATE_BYTES_PER_S` (10^12 B/s = 8 Tbit/s, via ``TCA_NETEM_RATE64``;
old kernels without it fall back to the u32 field, 2^32-1 B/s ~ 34 Gbit/s):
serialisation adds at most 66 ns for a 64 KiB GSO packet and the htb class
above still sets the real rate. Residual behaviour, as on any FIFO path with
variable delay: a packet never leaves before the one ahead of it, so packets
closer together than the jitter share the larger delay. Sparse probes (ping)
see the configured distribution; a dense flow sees a mean delay pushed towards
``delay + jitter`` and less variation than configured. The whole direction is
one FIFO (different flows keep their relative order too). ``reorder_pct``
still works: those packets bypass the delay and are sent at once (netem's
reorder, with ``gap`` 1). Duplicates are re-enqueued at the root qdisc, so they
cross the htb shaper again.
"""

from __future__ import annotations

import errno as errno_codes
import functools
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from pyroute2 import IPRoute
from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    nla,
    nlmsg,
)
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_NEWQDISC, TC_H_ROOT
from pyroute2.netlink.rtnl.tcmsg import sched_netem, tcmsg

from testbed.cmd import run_short
from testbed.errors import InputError, KernelError
from testbed.lab.nssocket import ifindex

__all__ = [
    "NetemBackend",
    "NetemQdiscMsg",
    "netem_request",
    "netem_qdisc_msg",
    "send_qdisc_msg",
    "netem_needed",
    "probe_netem",
    "distribution_table",
    "percent_to_u32",
    "ms_to_ns",
    "ns_to_ticks",
    "DISTRIBUTIONS",
    "FIFO_RATE_BYTES_PER_S",
    "NETEM_DIST_SCALE",
    "NETEM_DIST_TABLE_SIZE",
    "U32_MAX",
]

U32_MAX = 0xFFFFFFFF
#: Largest jitter tabledist() accepts: the kernel caps it at INT_MAX ns.
MAX_JITTER_NS = 2**31 - 1
#: psched ticks are 2^6 ns on every kernel since 2.6.2x (PSCHED_SHIFT).
PSCHED_SHIFT = 6
#: netem's fixed-point scale for distribution samples (linux/pkt_sched.h).
NETEM_DIST_SCALE = 8192
#: Samples in iproute2's tables (16384-point inverse CDF, every 4th point).
NETEM_DIST_TABLE_SIZE = 4096
#: netem rate set only to keep the tfifo in arrival order (see module docstring).
FIFO_RATE_BYTES_PER_S = 10**12
#: Delay-jitter distributions; "uniform" is netem's built-in one (no table sent).
DISTRIBUTIONS: Tuple[str, ...] = ("normal", "pareto", "paretonormal", "uniform")
LOSS_MODELS: Tuple[str, ...] = ("random", "gilbert-elliott")

_NETEM_LOSS_GE = "NETEM_LOSS_GE"
_IP_TIMEOUT_S = 10.0
_PROBE_LIMIT_PKTS = 1000


# ------------------------------------------------------------ unit conversion


def percent_to_u32(pct: float, field: str = "percent") -> int:
    """0..100 % as netem's u32 probability (0 = never, 0xFFFFFFFF = always)."""
    if not (isinstance(pct, (int, float)) and math.isfinite(pct)) or not 0 <= pct <= 100:
        raise InputError(field, f"must be a percentage between 0 and 100, got {pct!r}")
    return int(round(pct / 100 * U32_MAX))


def _fraction_to_u32(fraction: float, field: str) -> int:
    if not (isinstance(fraction, (int, float)) and math.isfinite(fraction)):
        raise InputError(field, f"must be a probability between 0 and 1, got {fraction!r}")
    if not 0 <= fraction <= 1:
        raise InputError(field, f"must be a probability between 0 and 1, got {fraction!r}")
    return int(round(fraction * U32_MAX))


def ms_to_ns(value_ms: float, field: str = "delay") -> int:
    """Milliseconds (>= 0, finite) to whole nanoseconds."""
    if not (isinstance(value_ms, (int, float)) and math.isfinite(value_ms)) or value_ms < 0:
        raise InputError(field, f"must be a time >= 0 ms, got {value_ms!r}")
    return int(round(value_ms * 1_000_000))


def ns_to_ticks(value_ns: int) -> int:
    """Nanoseconds to psched ticks for ``tc_netem_qopt`` (saturating at u32)."""
    return min(value_ns >> PSCHED_SHIFT, U32_MAX)


# ------------------------------------------------------ distribution tables


def _clip_s16(value: int) -> int:
    return max(-32768, min(32767, value))


@functools.lru_cache(maxsize=1)
def _normal_inverse_cdf() -> Tuple[Optional[float], ...]:
    """NISTnet's inverse normal CDF on 16384 points (iproute2 netem/normal.c).

    x sweeps -10..10.05 in steps of 0.00005 *accumulated* exactly as the C
    loop does, and each point keeps the last x that rounds to it, so the
    table matches iproute2's bit for bit.
    """
    size = 4 * NETEM_DIST_TABLE_SIZE
    table: List[Optional[float]] = [None] * (size + 1)
    root2 = math.sqrt(2.0)
    x = -10.0
    while x < 10.05:
        table[round(size * (0.5 + 0.5 * math.erf(x / root2)))] = x
        x += 0.00005
    return tuple(table)


def _pareto_value(i: int) -> int:
    """Pareto (a = 3) sample, centred and scaled (iproute2 netem/pareto.c)."""
    value = 1.0 / math.pow(i / 65536.0, 1.0 / 3.0)
    value = (value - 1.5) * (4.0 / 3.0) * NETEM_DIST_SCALE
    return int(round(min(value, 32767.0)))


@functools.lru_cache(maxsize=None)
def distribution_table(name: str) -> Tuple[int, ...]:
    """netem's delay distribution table ``name`` (4096 s16 values), or () for uniform."""
    if name == "uniform":
        return ()
    if name == "pareto":
        return tuple(_pareto_value(i) for i in range(65536, 0, -16))
    if name in ("normal", "paretonormal"):
        inverse = _normal_inverse_cdf()
        out = []
        for i in range(0, 4 * NETEM_DIST_TABLE_SIZE, 4):
            x = inverse[i]
            if x is None:  # every point is hit by the sweep; guard the invariant
                raise RuntimeError(f"normal table point {i} was never computed")
            normal = int(round(x * NETEM_DIST_SCALE))
            if name == "normal":
                out.append(_clip_s16(normal))
            else:
                # C: value = (normvalue + 3 * parvalue) / 4, integer division
                total = normal + 3 * _pareto_value(65536 - 4 * i)
                out.append(_clip_s16(int(total / 4)))
        return tuple(out)
    raise InputError(
        "jitter_distribution",
        f"unknown distribution {name!r}; expected one of {', '.join(DISTRIBUTIONS)}",
    )


# ------------------------------------------------------------ netlink message


class _NetemOptions(nla):
    """TCA_OPTIONS of netem: struct tc_netem_qopt followed by TCA_NETEM_* attributes."""

    fields = sched_netem.options.fields  # delay, limit, loss, gap, duplicate, jitter
    nla_map = (
        ("TCA_NETEM_UNSPEC", "none"),
        ("TCA_NETEM_CORR", "netem_corr"),
        ("TCA_NETEM_DELAY_DIST", "array(int16)"),
        ("TCA_NETEM_REORDER", "netem_reorder"),
        ("TCA_NETEM_CORRUPT", "netem_corrupt"),
        ("TCA_NETEM_LOSS", "netem_loss|nested"),
        ("TCA_NETEM_RATE", "netem_rate"),
        ("TCA_NETEM_ECN", "uint32"),
        ("TCA_NETEM_RATE64", "uint64"),
        ("TCA_NETEM_PAD", "hex"),
        ("TCA_NETEM_LATENCY64", "int64"),
        ("TCA_NETEM_JITTER64", "int64"),
        ("TCA_NETEM_SLOT", "hex"),
        ("TCA_NETEM_SLOT_DIST", "hex"),
        ("TCA_NETEM_PRNG_SEED", "uint64"),
    )

    netem_corr = sched_netem.options.netem_corr
    netem_reorder = sched_netem.options.netem_reorder
    netem_corrupt = sched_netem.options.netem_corrupt
    netem_rate = sched_netem.options.netem_rate

    class netem_loss(nla):
        """TCA_NETEM_LOSS: one loss-model attribute."""

        nla_map = (
            ("NETEM_LOSS_UNSPEC", "none"),
            ("NETEM_LOSS_GI", "netem_gimodel"),
            ("NETEM_LOSS_GE", "netem_gemodel"),
        )

        class netem_gimodel(nla):
            fields = (("p13", "I"), ("p31", "I"), ("p32", "I"), ("p14", "I"), ("p23", "I"))

        class netem_gemodel(nla):
            fields = (("p", "I"), ("r", "I"), ("h", "I"), ("k1", "I"))


class NetemQdiscMsg(nlmsg):
    """A ``tcmsg`` whose TCA_OPTIONS is always decoded/encoded as full netem options.

    A separate class rather than a ``tcmsg`` subclass: pyroute2 caches the
    compiled attribute table per class, and a subclass would inherit tcmsg's.
    """

    prefix = "TCA_"
    fields = tcmsg.fields  # family, pad1, pad2, index, handle, parent, info
    nla_map = (
        ("TCA_UNSPEC", "none"),
        ("TCA_KIND", "asciiz"),
        ("TCA_OPTIONS", "netem_options"),
    )
    netem_options = _NetemOptions


def netem_needed(profile) -> bool:
    """True when the profile asks for anything netem does (delay, jitter, loss, ...)."""
    return any(
        value > 0
        for value in (
            profile.delay_ms,
            profile.jitter_ms,
            profile.loss_pct,
            profile.duplicate_pct,
            profile.corrupt_pct,
            profile.reorder_pct,
        )
    )


def netem_request(profile, limit_pkts: int) -> Dict[str, Any]:
    """The netem options for ``profile``, every value in the kernel's units.

    Returns the TCA_OPTIONS value of :class:`NetemQdiscMsg`: the fields of
    ``struct tc_netem_qopt`` (``delay``/``jitter`` in psched ticks, ``loss``/
    ``duplicate`` as u32 probabilities, ``limit`` in packets, ``gap``) plus
    ``attrs``, the TCA_NETEM_* attributes as ``[name, value]`` pairs. These
    are not ``IPRoute.tc()`` keyword arguments: pyroute2's netem plugin
    cannot express GE loss, distribution tables or 64-bit times, so
    :meth:`NetemBackend.apply` sends the message itself.
    """
    _check_limit(limit_pkts)
    if profile.jitter_distribution not in DISTRIBUTIONS:
        raise InputError(
            "jitter_distribution",
            f"unknown distribution {profile.jitter_distribution!r}; "
            f"expected one of {', '.join(DISTRIBUTIONS)}",
        )
    latency_ns = ms_to_ns(profile.delay_ms, "delay")
    jitter_ns = ms_to_ns(profile.jitter_ms, "jitter")
    if jitter_ns > MAX_JITTER_NS:
        raise InputError("jitter", f"netem takes at most {MAX_JITTER_NS / 1e6:g} ms of jitter")

    attrs: List[List[Any]] = []
    options: Dict[str, Any] = {
        "delay": ns_to_ticks(latency_ns),
        "limit": limit_pkts,
        "loss": 0,
        "gap": 0,
        "duplicate": percent_to_u32(profile.duplicate_pct, "duplicate"),
        "jitter": ns_to_ticks(jitter_ns),
        "attrs": attrs,
    }

    delay_corr = percent_to_u32(profile.correlation_pct, "correlation")
    if delay_corr and jitter_ns:
        attrs.append(
            ["TCA_NETEM_CORR", {"delay_corr": delay_corr, "loss_corr": 0, "dup_corr": 0}]
        )

    reorder = percent_to_u32(profile.reorder_pct, "reorder")
    if reorder:
        if not latency_ns:
            raise InputError(
                "reorder", "reorder needs a delay above 0 (netem reorders by skipping the delay)"
            )
        options["gap"] = 1
        attrs.append(["TCA_NETEM_REORDER", {"prob_reorder": reorder, "corr_reorder": 0}])

    corrupt = percent_to_u32(profile.corrupt_pct, "corrupt")
    if corrupt:
        attrs.append(["TCA_NETEM_CORRUPT", {"prob_corrupt": corrupt, "corr_corrupt": 0}])

    options["loss"], loss_attr = _loss(profile)
    if loss_attr is not None:
        attrs.append(loss_attr)

    if jitter_ns:
        attrs.extend(_fifo_rate_attrs())
        table = distribution_table(profile.jitter_distribution)
        if table:
            attrs.append(["TCA_NETEM_DELAY_DIST", table])

    attrs.append(["TCA_NETEM_LATENCY64", latency_ns])
    attrs.append(["TCA_NETEM_JITTER64", jitter_ns])
    return options


def _check_limit(limit_pkts: int) -> None:
    if isinstance(limit_pkts, bool) or not isinstance(limit_pkts, int):
        raise InputError(
            "queue", f"netem limit must be a whole number of packets, got {limit_pkts!r}"
        )
    if not 1 <= limit_pkts <= U32_MAX:
        raise InputError("queue", f"netem limit must be 1..{U32_MAX} packets, got {limit_pkts}")


def _loss(profile) -> Tuple[int, Optional[List[Any]]]:
    """(qopt.loss, TCA_NETEM_LOSS attribute or None) for the profile's loss model."""
    if profile.loss_model not in LOSS_MODELS:
        raise InputError(
            "loss_model",
            f"unknown loss model {profile.loss_model!r}; expected one of {', '.join(LOSS_MODELS)}",
        )
    loss = percent_to_u32(profile.loss_pct, "loss")
    if not loss:
        return 0, None
    if profile.loss_model == "random":
        return loss, None
    ge = profile.gilbert_elliott_params()
    gemodel = {
        "p": _fraction_to_u32(ge["p"], "loss"),
        "r": _fraction_to_u32(ge["r"], "loss_burst"),
        "h": _fraction_to_u32(ge["h"], "loss"),
        "k1": _fraction_to_u32(1.0 - ge["k"], "loss"),
    }
    return 0, ["TCA_NETEM_LOSS", {"attrs": [[_NETEM_LOSS_GE, gemodel]]}]


def _fifo_rate_attrs() -> List[List[Any]]:
    """A netem rate that only serves to keep the tfifo in order (module docstring)."""
    rate = {"rate": U32_MAX, "packet_overhead": 0, "cell_size": 0, "cell_overhead": 0}
    return [["TCA_NETEM_RATE", rate], ["TCA_NETEM_RATE64", FIFO_RATE_BYTES_PER_S]]


def netem_qdisc_msg(
    ifindex: int, parent: Optional[int], handle: int, options: Dict[str, Any]
) -> NetemQdiscMsg:
    """The RTM_NEWQDISC message adding netem ``options`` (from :func:`netem_request`)."""
    msg = NetemQdiscMsg()
    msg["family"] = 0  # AF_UNSPEC
    msg["index"] = ifindex
    msg["handle"] = handle
    msg["parent"] = TC_H_ROOT if parent is None else parent
    msg["info"] = 0
    msg["attrs"] = [["TCA_KIND", "netem"], ["TCA_OPTIONS", options]]
    return msg


_CREATE_FLAGS = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL


def send_qdisc_msg(ipr, msg: NetemQdiscMsg, flags: int = _CREATE_FLAGS) -> None:
    """Send ``msg`` (a create request by default) and wait for the kernel's ack.

    pyroute2 0.9's synchronous ``IPRoute.nlm_request`` reads
    ``status["nlm_generator"]``, which ``IPRoute.__init__`` never sets
    (KeyError); default it to pyroute2's own default (False) first. The
    responses are drained either way, so an error ack always raises here.
    """
    status = getattr(ipr, "status", None)
    if status is not None and "nlm_generator" not in status:
        status["nlm_generator"] = False
    for _response in ipr.nlm_request(msg, msg_type=RTM_NEWQDISC, msg_flags=flags):
        pass


def _interface_name(ipr, ifindex: int) -> str:
    """``"veth0 (ifindex 5)"`` for error messages; the index alone if lookup fails."""
    try:
        links = ipr.get_links(ifindex)
        name = links[0].get_attr("IFLA_IFNAME")
    except (NetlinkError, IndexError, AttributeError, KeyError, OSError, TypeError):
        name = None
    return f"{name} (ifindex {ifindex})" if name else f"ifindex {ifindex}"


def _netlink_message(exc: NetlinkError) -> str:
    """The kernel's extended-ack text if the socket asked for it, else strerror."""
    if len(exc.args) > 1 and exc.args[1]:
        return str(exc.args[1])
    return os.strerror(exc.code)


# ---------------------------------------------------------------- the backend


@dataclass(frozen=True)
class _ProbeProfile:
    """The smallest impairment: 1 ms of delay."""

    delay_ms: float = 1.0
    jitter_ms: float = 0.0
    jitter_distribution: str = "uniform"
    correlation_pct: float = 0.0
    loss_pct: float = 0.0
    loss_model: str = "random"
    duplicate_pct: float = 0.0
    corrupt_pct: float = 0.0
    reorder_pct: float = 0.0


def _run_ip(argv: List[str]) -> Tuple[bool, str]:
    """Run an ``ip`` command; (ok, last line of stderr)."""
    ok, out = run_short(argv, _IP_TIMEOUT_S)
    return ok, "" if ok else out


def probe_netem(netns: str, ifname: str) -> Tuple[bool, str]:
    """Try to add a root netem qdisc on ``ifname`` inside ``netns``; (works, reason).

    The caller owns the namespace and the interface (and removes them). The
    qdisc is left in place for the namespace's removal to take away.
    """
    try:
        with IPRoute(netns=netns, ext_ack=True) as ipr:
            try:
                index = ifindex(ipr, ifname, netns)
            except KernelError as exc:
                return False, str(exc)
            NetemBackend().apply(ipr, index, None, 0x10000, _ProbeProfile(), _PROBE_LIMIT_PKTS)
    except KernelError as exc:
        cause = exc.__cause__
        detail = _netlink_message(cause) if isinstance(cause, NetlinkError) else str(exc)
        if exc.errno == errno_codes.ENOENT:
            return False, f"kernel has no netem qdisc ({detail})"
        return False, f"kernel refused a netem qdisc ({detail})"
    except (NetlinkError, OSError) as exc:
        return False, f"cannot test netem in {netns}: {exc}"
    return True, "netem qdisc accepted by the kernel"


_availability: Dict[int, Tuple[bool, str]] = {}


def _probe_in_scratch_namespace() -> Tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "cannot test for netem without root (network namespaces and tc need it)"
    netns = f"tbn-netem-{os.getpid()}"
    ok, err = _run_ip(["ip", "netns", "add", netns])
    if not ok:
        return False, f"cannot create scratch namespace {netns} to test netem: {err}"
    try:
        ok, err = _run_ip(
            ["ip", "-n", netns, "link", "add", "tbn-p0", "type", "veth", "peer", "name", "tbn-p1"]
        )
        if not ok:
            return False, f"cannot create a veth pair to test netem: {err}"
        return probe_netem(netns, "tbn-p0")
    finally:
        removed, err = _run_ip(["ip", "netns", "del", netns])
        if not removed:
            raise KernelError(f"could not remove scratch namespace {netns}: {err}")


class NetemBackend:
    """Delay, jitter, loss, duplicate, corrupt and reorder from the kernel's netem qdisc."""

    name = "netem"

    def available(self) -> Tuple[bool, str]:
        """(True, why) if this kernel accepts a netem qdisc, else (False, reason).

        Tested for real once per process in a scratch namespace
        ``tbn-netem-<pid>`` that is always removed again.
        """
        pid = os.getpid()
        if pid not in _availability:
            _availability[pid] = _probe_in_scratch_namespace()
        return _availability[pid]

    def apply(
        self,
        ipr,
        ifindex: int,
        parent: Optional[int],
        handle: int,
        profile,
        limit_pkts: int,
    ) -> None:
        """Add the netem qdisc for ``profile`` on ``ifindex`` through ``ipr``.

        ``parent`` is the htb class (e.g. 0x10001 for 1:1) or None for the
        root; ``handle`` the qdisc's own (e.g. 0x100000 for 10:). Netlink
        errors become :class:`KernelError` with the errno kept.
        """
        msg = netem_qdisc_msg(ifindex, parent, handle, netem_request(profile, limit_pkts))
        try:
            send_qdisc_msg(ipr, msg)
        except NetlinkError as exc:
            where = "root" if parent is None else f"parent {parent >> 16:x}:{parent & 0xFFFF:x}"
            raise KernelError(
                f"cannot add netem qdisc ({where}) on {_interface_name(ipr, ifindex)}: "
                f"{_netlink_message(exc)}",
                exc.code,
            ) from exc
