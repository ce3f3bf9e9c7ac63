"""``testbed set``, ``show``, ``capture`` and ``graph`` on real labs (userspace delay line here).

Oracles independent of the code under test: ping's RTT measured across the
link (the delay in force), the delay line's own config file (what it was
told to run), scapy reading the pcap tcpdump wrote (packet count, ICMP
between the lab's hosts).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/helpers.py

from testbed.cli import main  # noqa: E402
from testbed.shaping.userspace import config_path  # noqa: E402

pytestmark = pytest.mark.integration

MULTI = {"sites": ["cw", "gcp"], "hosts_per_site": 1, "paths": {"cw-gcp": "direct+transit"},
         "transit_hops": 1}
MULTI_LINKS = {"cw-gcp": {"rate": "200Mbit", "delay": "5ms", "mtu": 1500},
               "cw-gcp-transit": {"rate": "100Mbit", "delay": "10ms", "loss": "0%"}}


def _rtt_ms(lab, src: str, dst: str, count: int = 5) -> float:
    out = lab.node(src).run(["ping", "-c", str(count), "-i", "0.05", "-W", "2", lab.node(dst).ip],
                            timeout_s=30).stdout
    return float(re.search(r"= [\d.]+/([\d.]+)/", out).group(1))


def _show(capsys, name: str) -> dict:
    capsys.readouterr()
    rc = main(["show", name, "--json"])
    view = json.loads(capsys.readouterr().out)
    assert rc == (1 if view["mismatches"] else 0)
    return view


def _line_config(lab, wire: str) -> dict:
    rec = next(r for r in lab.proc_records() if r.kind == "delayline" and r.netns == wire)
    return json.loads(config_path(rec).read_text())


def _line_profiles(lab, wire: str) -> dict:
    return {(q["link"], q["direction"]): q["profile"] for q in _line_config(lab, wire)["queues"]}


def test_set_moves_the_rtt_and_show_reports_it(lab_factory, capsys):
    lab = lab_factory.create("pair", "it-set", links={"link": {"rate": "500Mbit", "delay": "5ms"}})
    before = _rtt_ms(lab, "h1", "h2")
    assert 9.5 < before < 15, before  # 2 x 5 ms

    assert main(["set", "it-set", "link.delay=25ms"]) == 0
    assert "delay 5ms -> rate 500Mbit, delay 25ms" in capsys.readouterr().out
    after = _rtt_ms(lab, "h1", "h2")
    assert 49.5 < after < 56, after  # 2 x 25 ms
    view = _show(capsys, "it-set")
    link = view["links"][0]
    assert link["changed"] is True
    assert link["forward"]["delay"] == "25ms" and link["reverse"]["delay"] == "25ms"
    assert link["configured"]["forward"]["delay"] == "5ms"
    assert view["mismatches"] == []  # the delay line's own config agrees with the state

    # one direction; the rest stays as in force now (a later set starts from it)
    assert main(["set", "it-set", "link.forward.delay=5ms"]) == 0
    assert 29.5 < _rtt_ms(lab, "h1", "h2") < 36  # 5 + 25
    view = _show(capsys, "it-set")
    assert (view["links"][0]["forward"]["delay"], view["links"][0]["reverse"]["delay"]) == ("5ms", "25ms")
    assert main(["show", "it-set"]) == 0
    text = capsys.readouterr().out
    assert "link*" in text and "25ms" in text and "h1-eth0" in text and lab.node("h2").ip in text

    assert main(["set", "it-set", "link=configured"]) == 0
    assert _show(capsys, "it-set")["links"][0]["changed"] is False
    assert 9.5 < _rtt_ms(lab, "h1", "h2") < 15


def test_set_is_all_or_nothing(lab_factory, capsys):
    lab = lab_factory.create("multicloud", "it-set2", params=MULTI, links=MULTI_LINKS)
    direct = next(l["wire"] for l in lab.links() if l["name"] == "cw-gcp")
    transit = next(l["wire"] for l in lab.links() if l["name"] == "cw-gcp-transit")
    base = _rtt_ms(lab, "cw-h1", "gcp-h1")
    lines_before = _line_profiles(lab, direct)

    # a bad second item: refused before anything changes (exit 2, naming it)
    assert main(["set", "it-set2", "cw-gcp.delay=30ms", "cw-gcp-transit.mtu=9000"]) == 2
    assert "cw-gcp-transit.mtu" in capsys.readouterr().err
    assert _line_profiles(lab, direct) == lines_before

    # the second link fails while being changed: the first is put back
    rec = next(r for r in lab.proc_records() if r.kind == "delayline" and r.netns == transit)
    cfg = config_path(rec)
    saved = cfg.read_bytes()
    generation = int(_line_config(lab, direct).get("generation", 0))
    cfg.write_text("not json")
    try:
        assert main(["set", "it-set2", "cw-gcp.delay=30ms", "cw-gcp-transit.delay=20ms"]) == 1
    finally:
        cfg.write_bytes(saved)
    err = capsys.readouterr().err
    assert "put back" in err, err
    # the direct link's line was changed, then put back: two reloads, the old profile
    assert int(_line_config(lab, direct)["generation"]) == generation + 2
    assert _line_profiles(lab, direct) == lines_before
    view = _show(capsys, "it-set2")
    assert not any(l["changed"] for l in view["links"]) and view["mismatches"] == []
    assert abs(_rtt_ms(lab, "cw-h1", "gcp-h1") - base) < 3


def test_capture_writes_a_pcap_scapy_reads(lab_factory, tmp_path, capsys):
    from scapy.all import ICMP, IP, rdpcap

    lab = lab_factory.create("pair", "it-cap", links={"link": {"rate": "100Mbit", "delay": "2ms"}})
    out = tmp_path / "link.pcap"
    pinger = lab.node("h1").popen(["ping", "-c", "200", "-i", "0.01", lab.node("h2").ip])
    try:
        assert main(["capture", "it-cap", "link", "-c", "12", "-w", str(out), "--filter", "icmp"]) == 0
    finally:
        pinger.wait(timeout=30)
    packets = rdpcap(str(out))
    assert len(packets) == 12
    addrs = {lab.node("h1").ip, lab.node("h2").ip}
    assert all(p.haslayer(ICMP) and {p[IP].src, p[IP].dst} == addrs for p in packets)
    assert "captured 12 packets" in capsys.readouterr().err
    # tcpdump ended with the command: no tcpdump left in the link's wire namespace
    wire_ns = f"net:[{os.stat('/run/netns/' + lab.links()[0]['wire']).st_ino}]"
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _comm(p) == "tcpdump"
                and _netns_of(p) == wire_ns]


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _netns_of(pid: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return ""


def test_graph_of_a_live_lab_shows_the_profile_in_force(lab_factory, tmp_path, capsys):
    lab_factory.create("pair", "it-graph", links={"link": {"rate": "200Mbit", "delay": "3ms"}})
    assert main(["set", "it-graph", "link.loss=1%"]) == 0
    capsys.readouterr()
    assert main(["graph", "it-graph", "--format", "dot"]) == 0
    dot = capsys.readouterr().out
    assert '"h1" -- "h2" [label="link: 200Mbit 3ms loss 1%"]' in dot
    png = tmp_path / "lab.png"
    assert main(["graph", "it-graph", "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_set_on_the_netem_backend_changes_the_qdisc_and_the_htb_class(lab_factory, capsys):
    """Where the kernel has netem (not on every machine: skipped, with the reason, elsewhere)."""
    import helpers
    from testbed.shaping.netem import NetemBackend

    ok, reason = NetemBackend().available()
    if not ok:
        pytest.skip(f"netem backend unavailable: {reason}")
    lab = lab_factory.create("pair", "it-setn", backend="netem",
                             links={"link": {"rate": "500Mbit", "delay": "5ms"}})
    wire = lab.links()[0]["wire"]
    assert main(["set", "it-setn", "link.forward.delay=25ms", "link.forward.rate=200Mbit"]) == 0
    # forward (h1 -> h2) leaves the wire by port-b: its netem and htb class there
    netem = [q for q in helpers.tc_qdiscs(wire, "port-b") if q["kind"] == "netem"]
    assert netem and netem[0]["options"]["delay"]["delay"] == pytest.approx(0.025, abs=1e-6)
    rates = [c["rate_bps"] for c in helpers.tc_classes(wire, "port-b") if c["kind"] == "htb"]
    assert 200_000_000 in rates
    reverse = [q for q in helpers.tc_qdiscs(wire, "port-a") if q["kind"] == "netem"]
    assert reverse[0]["options"]["delay"]["delay"] == pytest.approx(0.005, abs=1e-6)
    assert 29 < _rtt_ms(lab, "h1", "h2") < 36
    view = _show(capsys, "it-setn")
    assert view["links"][0]["forward"]["delay"] == "25ms" and view["links"][0]["reverse"]["delay"] == "5ms"


def test_capture_ends_its_tcpdump_on_sigterm(lab_factory, tmp_path):
    """``testbed capture`` without -c, stopped by SIGTERM: tcpdump ended by pid, the pcap whole."""
    import signal
    import subprocess
    import time

    import helpers
    from scapy.all import rdpcap

    lab = lab_factory.create("pair", "it-capsig", links={"link": {"rate": "100Mbit", "delay": "1ms"}})
    out = tmp_path / "sig.pcap"
    proc = subprocess.Popen([sys.executable, "-m", "testbed.cli", "capture", "it-capsig", "link",
                             "-w", str(out)], stderr=subprocess.PIPE, text=True,
                            env=helpers.subprocess_env())
    wire_ns = f"net:[{os.stat('/run/netns/' + lab.links()[0]['wire']).st_ino}]"
    deadline = time.monotonic() + 20
    while not [p for p in os.listdir("/proc") if p.isdigit() and _comm(p) == "tcpdump"
               and _netns_of(p) == wire_ns]:
        assert time.monotonic() < deadline, "tcpdump did not start"
        time.sleep(0.05)
    pinger = lab.node("h1").popen(["ping", "-c", "100", "-i", "0.02", lab.node("h2").ip])
    time.sleep(0.7)  # some packets, and the ping still running
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    pinger.wait(timeout=30)
    assert proc.returncode == 0, err
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _comm(p) == "tcpdump"
                and _netns_of(p) == wire_ns]
    captured = int(re.search(r"captured (\d+) packets", err).group(1))
    assert captured > 0 and len(rdpcap(str(out))) == captured


def test_show_names_a_delay_line_that_runs_another_profile(lab_factory, capsys):
    lab = lab_factory.create("pair", "it-showm", links={"link": {"delay": "2ms"}})
    rec = next(r for r in lab.proc_records() if r.kind == "delayline")
    cfg = config_path(rec)
    saved = cfg.read_text()
    doc = json.loads(saved)
    doc["queues"][0]["profile"]["delay_ms"] = 7.0  # what a line told behind the state's back runs
    cfg.write_text(json.dumps(doc))
    try:
        view = _show(capsys, "it-showm")
    finally:
        cfg.write_text(saved)
    assert view["mismatches"] and "link link forward" in view["mismatches"][0]
    assert _show(capsys, "it-showm")["mismatches"] == []


def test_capture_with_a_filter_tcpdump_refuses_is_exit_2(lab_factory, tmp_path, capsys):
    lab_factory.create("pair", "it-capf", links={"link": {"delay": "1ms"}})
    out = tmp_path / "x.pcap"
    assert main(["capture", "it-capf", "link", "-c", "3", "-w", str(out), "--filter", "tcp port"]) == 2
    assert "filter: tcpdump refuses the filter 'tcp port'" in capsys.readouterr().err
    assert not out.exists()
