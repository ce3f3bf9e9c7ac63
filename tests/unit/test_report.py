"""report.md and the rich summary table, made from results alone."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from testbed.report import document as report_module
from testbed.report import summary as summary_module
from testbed.report.document import render_report, write_report
from testbed.report.markdown import format_number
from testbed.report.summary import print_summary, summary_table

FIXTURE = Path(__file__).parent / "fixtures" / "results_sample.json"


@pytest.fixture
def sample() -> dict:
    return json.loads(FIXTURE.read_text())


def _row(markdown: str, label: str) -> list:
    """Cells of the table row whose first cell is ``label``."""
    for line in markdown.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} in report")


def test_all_is_exported():
    for module in (report_module, summary_module):
        for name in module.__all__:
            assert hasattr(module, name), name


def test_header(sample):
    text = render_report(sample, [])
    assert text.startswith("# Scenario: direct-vs-transit\n")
    assert "- **Complete:** yes" in text
    assert "- **Delay backend:** userspace" in text
    assert "- **Kernel:** 6.1.0-28-amd64" in text
    assert "2025-01-31T12:00:00+00:00" in text and "2025-01-31T12:01:20+00:00" in text
    assert "iperf3 3.12" in text
    assert "`net.ipv4.tcp_rmem`" in text
    assert "`measure.tcp.duration_s=8`" in text


def test_incomplete_run_is_flagged(sample):
    sample["complete"] = False
    sample["variants"][1]["complete"] = False
    text = render_report(sample, [])
    assert "**NO:" in text
    assert "- internet-transit: did not complete" in text


def test_ratio_column_second_over_first(sample):
    text = render_report(sample, [])
    header = "| Metric | direct-interconnect | internet-transit | internet-transit / direct-interconnect |"
    assert header in text
    direct, transit = (v["ping"]["rtt_ms"]["mean"] for v in sample["variants"])
    cells = _row(text, "RTT mean (ms)")
    assert cells[1] == format_number(direct)
    assert cells[2] == format_number(transit)
    assert cells[3] == f"{transit / direct:.2f}x"
    tcp = _row(text, "TCP throughput (Mbit/s)")
    ratio = sample["variants"][1]["tcp"]["throughput_mbps"] / sample["variants"][0]["tcp"]["throughput_mbps"]
    assert tcp[3] == f"{ratio:.2f}x"
    assert float(tcp[3].rstrip("x")) < 1  # transit is slower
    assert _row(text, "Ping loss (%)")[3] == "-"  # division by a zero loss


def test_every_metric_group_is_reported(sample):
    text = render_report(sample, [])
    for label in (
        "RTT p50 (ms)",
        "RTT p99 (ms)",
        "OWD forward mean (ms)",
        "OWD reverse mean (ms)",
        "Jitter forward (ms)",
        "Jitter reverse (ms)",
        "Loss forward (%)",
        "TCP retransmits",
        "Time to steady (s)",
        "UDP jitter (ms)",
        "UDP loss (%)",
        "Router hops",
        "Path MTU (bytes)",
    ):
        cells = _row(text, label)
        assert cells[1] != "-" and cells[2] != "-", label
    assert _row(text, "Path MTU (bytes)")[1:3] == ["9000", "1500"]
    assert _row(text, "TCP retransmits")[1:3] == ["3", "214"]


def test_fidelity_table(sample):
    text = render_report(sample, [])
    assert "## Fidelity" in text
    assert "### direct-interconnect: pass" in text
    assert "### internet-transit: **FAIL**" in text
    assert "| Metric | Configured | Measured | Tolerance | Verdict | Note |" in text
    rows = [line for line in text.splitlines() if line.startswith("| throughput_mbps |")]
    assert len(rows) == 2
    # tolerances are absolute, in the metric's own unit (issue 13: not "15%")
    assert "| 1000 |" in rows[1] and "| 15 Mbit/s |" in rows[1] and "**FAIL**" in rows[1]
    assert "**WARN**" in text


def test_errors_and_emulator_sections(sample):
    sample["errors"] = ["interrupted by SIGINT"]
    text = render_report(sample, [])
    assert "## Errors" in text
    assert "- run: interrupted by SIGINT" in text
    assert "- internet-transit: udp: iperf3 reported 2 datagrams out of order" in text
    assert "## Emulator (userspace delay lines)" in text
    assert "| internet-transit | t1 | transit-hop | forward | 301201 | 291 |" in text


def test_no_errors_section_when_clean(sample):
    for variant in sample["variants"]:
        variant["errors"] = []
    assert "## Errors" not in render_report(sample, [])


def test_plot_links_relative_to_the_report(sample, tmp_path):
    plots = [tmp_path / "rtt_cdf.png", tmp_path / "plots" / "throughput.png"]
    text = render_report(sample, plots, base_dir=tmp_path)
    assert "![rtt cdf](rtt_cdf.png)" in text
    assert "![throughput](plots/throughput.png)" in text
    assert "## Plots" not in render_report(sample, [])
    assert "![owd histogram](owd_histogram.png)" in render_report(sample, ["owd_histogram.png"])


def test_missing_sections_print_a_dash(sample):
    direct = sample["variants"][0]
    del direct["tcp"]
    sample["variants"][1]["udp"] = None
    del direct["owd"]["reverse"]
    text = render_report(sample, [])
    assert _row(text, "TCP throughput (Mbit/s)")[1] == "-"
    assert _row(text, "TCP throughput (Mbit/s)")[3] == "-"
    assert _row(text, "UDP jitter (ms)")[2] == "-"
    assert _row(text, "OWD reverse mean (ms)")[1] == "-"
    assert _row(text, "RTT mean (ms)")[1] != "-"


def test_owd_without_directions_falls_back_to_top_level(sample):
    for variant in sample["variants"]:
        variant["owd"].pop("forward")
    text = render_report(sample, [])
    top = sample["variants"][1]["owd"]["one_way_delay_ms"]["mean"]
    assert _row(text, "OWD forward mean (ms)")[2] == format_number(top)


def test_minimal_document_renders():
    doc = {"schema": "testbed.results/1", "scenario": "x", "complete": False, "variants": []}
    text = render_report(doc, [])
    assert "# Scenario: x" in text and "No variant produced results." in text
    assert "| Metric |" not in text


@pytest.mark.parametrize("count", [1, 3])
def test_ratio_column_only_for_two_variants(sample, count):
    variants = sample["variants"]
    extra = copy.deepcopy(variants[1])
    extra["name"] = "vpn"
    sample["variants"] = (variants + [extra])[:count]
    text = render_report(sample, [])
    header = next(line for line in text.splitlines() if line.startswith("| Metric | direct"))
    assert " / " not in header
    assert header.count("|") == count + 2


def test_table_cells_are_escaped(sample):
    sample["variants"][1]["fidelity"]["checks"][0]["detail"] = "a | b\nc"
    text = render_report(sample, [])
    assert "a \\| b c" in text


@pytest.mark.parametrize(
    "value, text",
    [
        (None, "-"),
        (float("nan"), "-"),
        (True, "yes"),
        (3, "3"),
        (0.0, "0"),
        (1759.4, "1759"),
        (42.575, "42.6"),
        (2.0, "2.00"),
        (0.0351, "0.0351"),
        ("cubic", "cubic"),
    ],
)
def test_format_number(value, text):
    assert format_number(value) == text


def test_write_report(sample, tmp_path):
    target = write_report(sample, [tmp_path / "rtt_cdf.png"], tmp_path / "report.md")
    text = target.read_text()
    assert text == render_report(sample, ["rtt_cdf.png"])
    assert text.endswith("\n") and not text.endswith("\n\n")


# ------------------------------------------------------------------ summary


def _console() -> Console:
    return Console(record=True, width=140, color_system=None)


def test_summary_table_rows(sample):
    table = summary_table(sample)
    assert table.row_count == 2
    headers = [str(column.header) for column in table.columns]
    assert headers == ["Variant", "RTT ms", "Jitter ms", "Loss %", "TCP Mbit/s", "Hops", "PMTU B", "Scale",
                       "Fidelity"]
    direct_cells = [list(column.cells)[0] for column in table.columns]
    transit_cells = [list(column.cells)[1] for column in table.columns]
    assert direct_cells[0] == "direct-interconnect"
    assert direct_cells[1] == format_number(sample["variants"][0]["ping"]["rtt_ms"]["mean"])
    assert direct_cells[6] == "9000"
    assert "pass" in direct_cells[8]
    assert transit_cells[4] == format_number(sample["variants"][1]["tcp"]["throughput_mbps"])
    assert "fail" in transit_cells[8]


def test_print_summary(sample):
    console = _console()
    print_summary(sample, console=console)
    out = console.export_text()
    assert "direct-interconnect" in out and "internet-transit" in out
    assert re.search(r"internet-transit\s+42\.6\s", out)
    assert "1 error(s) recorded" in out
    assert "INCOMPLETE" not in out


def test_summary_marks_incomplete_and_missing(sample):
    sample["complete"] = False
    sample["variants"][0]["complete"] = False
    del sample["variants"][0]["tcp"]
    sample["variants"][0]["fidelity"] = None
    console = _console()
    print_summary(sample, console=console)
    out = console.export_text()
    assert "INCOMPLETE" in out
    assert "direct-interconnect (incomplete)" in out
    row = next(line for line in out.splitlines() if "direct-interconnect" in line)
    assert row.split()[-1] == "-"  # no fidelity verdict


# --------------------------------------------------- readability (issue 17, 8i)


def test_rows_of_a_step_no_variant_ran_are_left_out(sample):
    for variant in sample["variants"]:
        variant.pop("udp", None)
    text = render_report(sample)
    assert "UDP throughput" not in text and "UDP loss" not in text
    assert "TCP throughput (Mbit/s)" in text  # the rest of its table stays


def test_a_table_whose_steps_all_missed_is_left_out(sample):
    for variant in sample["variants"]:
        variant.pop("path", None)
    assert "## Path" not in render_report(sample)


def test_the_configured_links_are_shown_per_direction(sample):
    sample["variants"][0]["links"]["asym"] = {"forward": {"rate": "1Gbit", "delay": "5ms"},
                                              "reverse": {"rate": None, "delay": "7ms"}}
    text = render_report(sample)
    assert "## Links as configured" in text
    row = _row(text, sample["variants"][0]["name"])  # first row of the links table
    assert row[1] == "site-fabric" and row[2] == "both" and row[3] == "10Gbit"
    asym = [line for line in text.splitlines() if "| asym |" in line]
    assert len(asym) == 2 and "| forward | 1Gbit | 5ms |" in asym[0] and "| reverse | unshaped | 7ms |" in asym[1]


def test_lab_up_and_steady_rows_are_explained(sample):
    sample["variants"][0]["lab"] = {"up_s": 1.2}
    sample["variants"][0]["time_to_steady_from_up_s"] = 4.5
    text = render_report(sample)
    assert "- Lab up: seconds from the start of `testbed up`" in text
    assert "- Up to steady throughput: from the start of `up`" in text


def test_print_summary_to_a_pipe_chooses_a_width_that_keeps_the_header(sample, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")  # what a narrow pipe (CI's log) gives rich
    print_summary(sample)  # pytest captures stdout: not a terminal
    out = capsys.readouterr().out
    assert "Fidelity" in out and "Fideli\n" not in out


def test_delay_line_lateness_checks_name_their_wire():
    from testbed import fidelity

    variant = {"emulator": {"delay_lines": [
        {"link": "transit-hop", "node": "_w5", "direction": "forward", "late_p99_ms": 0.2},
        {"link": "transit-hop", "node": "_w6", "direction": "forward", "late_p99_ms": 2.0}]}}
    pred = {"rtt_ms": 0.0, "owd_forward_ms": 0.0, "jitter_forward_ms": 0.0, "bottleneck_bps": None,
            "path_mtu": 1500, "loss_pct": 0.0, "hops": 1}
    names = [c["metric"] for c in fidelity.checks(pred, variant, {"rtt_tolerance_pct": 10,
                                                                  "throughput_tolerance_pct": 15,
                                                                  "jitter_tolerance_pct": 30})]
    late = [n for n in names if n.startswith("delay_line_late")]
    assert late == ["delay_line_late_p99_ms[transit-hop _w5:forward]",
                    "delay_line_late_p99_ms[transit-hop _w6:forward]"]


def test_ratio_keeps_two_significant_digits():
    from testbed.report.markdown import ratio as _ratio

    assert _ratio(1000.0, 1.4) == "0.0014x"  # not 0.00x
    assert _ratio(2.0, 3.0) == "1.50x"
    assert _ratio(0, 3.0) == "-"


_PRED = {"rtt_ms": 0.0, "owd_forward_ms": 0.0, "jitter_forward_ms": 0.0, "bottleneck_bps": None,
         "path_mtu": 1500, "loss_pct": 0.0, "hops": 1}
_TOL = {"rtt_tolerance_pct": 10, "throughput_tolerance_pct": 15, "jitter_tolerance_pct": 30}


def test_lateness_is_judged_over_the_steps_the_table_judges_and_named_by_step():
    from testbed import fidelity

    # _w5: 3 ms late over the whole run (a collective's bursts), 0.4 ms during the judged steps
    variant = {"emulator": {"delay_lines": [
        {"link": "transit-hop", "node": "_w5", "direction": "forward", "late_p99_ms": 3.0,
         "late_p99_ms_in_steps": 0.4, "late_step": "udp"},
        {"link": "transit-hop", "node": "_w6", "direction": "forward", "late_p99_ms": 3.0,
         "late_p99_ms_in_steps": 1.6, "late_step": "tcp"},
        {"link": "transit-hop", "node": "_w7", "direction": "forward", "late_p99_ms": 9.0,
         "late_p99_ms_in_steps": None, "late_step": None}]}}  # no judged step used it: unjudged
    checks = {c["metric"]: c for c in fidelity.checks(_PRED, variant, _TOL)
              if c["metric"].startswith("delay_line_late")}
    assert sorted(checks) == ["delay_line_late_p99_ms[transit-hop _w5:forward]",
                              "delay_line_late_p99_ms[transit-hop _w6:forward]"]
    assert checks["delay_line_late_p99_ms[transit-hop _w5:forward]"]["verdict"] == "pass"
    w6 = checks["delay_line_late_p99_ms[transit-hop _w6:forward]"]
    assert (w6["verdict"], w6["measured"]) == ("warn", 1.6)
    assert "fell behind during tcp" in w6["detail"]


def test_line_summary_takes_the_worst_judged_step_and_leaves_self_judged_steps_out():
    from testbed import runner

    class Lab:
        def delay_line_stats(self):
            return [{"netns": "tb.x._w2", "cpu_s": 1.0, "queues": [
                {"link": "direct", "direction": "forward", "received": 5000, "late_ms": {"p99": 4.0}},
                {"link": "direct", "direction": "reverse", "received": 10, "late_ms": {"p99": 0.1}}]}]

    by_step = {"owd": {"direct:forward@_w2": {"packets": 200, "late_p99_ms": 0.3}},
               "tcp": {"direct:forward@_w2": {"packets": 4000, "late_p99_ms": 0.7}},
               "collective": {"direct:forward@_w2": {"packets": 800, "late_p99_ms": 4.0}}}
    fwd, rev = runner._delay_line_summary(Lab(), by_step, ["collective"])
    assert (fwd["late_p99_ms"], fwd["late_p99_ms_in_steps"], fwd["late_step"]) == (4.0, 0.7, "tcp")
    assert (rev["late_p99_ms_in_steps"], rev["late_step"]) == (None, None)


def test_step_lateness_counts_only_the_steps_own_packets():
    from testbed import runner
    from testbed.delayline.latehist import LatenessHistogram

    def snap(lates_s, received):
        hist = LatenessHistogram()
        for late in lates_s:
            hist.add(late)
        return {"lines": {"direct:forward@_w2": {"hist": hist.sparse(), "p99_ms": None,
                                                 "received": received, "dropped_queue": 0}},
                "cpu": (0, 1)}

    before = snap([0.004] * 50, 50)  # 4 ms late at bring-up
    after = snap([0.004] * 50 + [0.0002] * 300, 350)
    step = runner._step_lateness(before, after)
    assert step["direct:forward@_w2"]["packets"] == 300
    assert step["direct:forward@_w2"]["late_p99_ms"] < 0.25


def test_summary_lists_rows_whose_own_verdict_did_not_pass(sample):
    sample["variants"][1]["collectives"] = [
        {"op": "allreduce", "algorithm": "ring", "bytes": 65536, "verdict": "pass"},
        {"op": "allreduce", "algorithm": "ring", "bytes": 1048576, "verdict": "warn",
         "verdict_reason": "delay line transit-hop:forward@_w2 ran 3.29 ms late (p99)"}]
    sample["variants"][0]["training"] = {"verdict": "fail", "verdict_reason": "the kernel dropped 4 packets"}
    console = _console()
    print_summary(sample, console=console)
    out = console.export_text()
    assert ("internet-transit: allreduce ring 1MiB warn: delay line transit-hop:forward@_w2 "
            "ran 3.29 ms late (p99)") in out
    assert "direct-interconnect: training fail: the kernel dropped 4 packets" in out
    assert "64KiB" not in out
