"""PNG plots from results alone, and re-plotting a saved run."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from testbed.report import plotting as plots_module
from testbed.errors import InputError
from testbed.report.plotting import PLOTS, make_plots, replot

FIXTURE = Path(__file__).parent / "fixtures" / "results_sample.json"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def sample() -> dict:
    return json.loads(FIXTURE.read_text())


def _png_size(path: Path):
    """(width, height) from the IHDR chunk; fails on anything but a PNG."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_all_is_exported():
    for name in plots_module.__all__:
        assert hasattr(plots_module, name), name


def test_make_plots_writes_non_empty_pngs(sample, tmp_path):
    out = tmp_path / "out"
    files = make_plots(sample, out)
    assert [f.name for f in files] == ["rtt_cdf.png", "owd_histogram.png", "throughput.png"]  # step order
    for path in files:
        assert path.parent == out
        assert path.stat().st_size > 10_000, path
        width, height = _png_size(path)
        assert width >= 500 and height >= 300
    assert sorted(p.name for p in out.iterdir()) == sorted(f.name for f in files)  # no temp files left


def test_owd_histogram_grows_with_variants(sample, tmp_path):
    (histogram,) = [f for f in make_plots(sample, tmp_path) if f.name == "owd_histogram.png"]
    _, two_high = _png_size(histogram)
    sample["variants"] = sample["variants"][:1]
    (histogram,) = [f for f in make_plots(sample, tmp_path / "one") if f.name == "owd_histogram.png"]
    _, one_high = _png_size(histogram)
    assert two_high > one_high


def test_rtt_cdf_has_a_line_per_variant_and_units(sample):
    figure = dict(PLOTS)["rtt_cdf.png"](sample)
    (axes,) = figure.axes
    assert len(axes.get_lines()) == 2
    assert axes.get_xlabel() == "RTT (ms)"
    assert "direct-vs-transit" in axes.get_title()
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert labels == ["direct-interconnect (n=30)", "internet-transit (n=29)"]
    xdata = sorted(axes.get_lines()[1].get_xdata())
    assert xdata[0] == pytest.approx(min(sample["variants"][1]["ping"]["samples_ms"]))


def test_throughput_plot_uses_intervals(sample):
    figure = dict(PLOTS)["throughput.png"](sample)
    (axes,) = figure.axes
    assert axes.get_ylabel() == "Throughput (Mbit/s)"
    assert axes.get_xlabel() == "Time since start (s)"
    lines = [line for line in axes.get_lines() if not line.get_label().endswith("steady")]
    assert len(lines) == 2
    expected = [item["mbps"] for item in sample["variants"][0]["tcp"]["intervals"]]
    assert list(lines[0].get_ydata()) == pytest.approx(expected)


def test_owd_histogram_one_panel_per_variant(sample):
    figure = dict(PLOTS)["owd_histogram.png"](sample)
    assert len(figure.axes) == 2
    for axes in figure.axes:
        assert axes.get_xlabel() == "One-way delay (ms)"
        assert axes.get_ylabel() == "Probes"
        counted = sum(patch.get_height() for patch in axes.patches)
        assert counted > 0
    assert sum(p.get_height() for p in figure.axes[0].patches) == len(
        sample["variants"][0]["owd"]["forward"]["samples_ms"]
    )


def test_plots_without_data_are_skipped(sample, tmp_path):
    for variant in sample["variants"]:
        del variant["tcp"]
        variant["owd"] = None
    files = make_plots(sample, tmp_path)
    assert [f.name for f in files] == ["rtt_cdf.png"]
    assert make_plots({"variants": []}, tmp_path / "empty") == []


def test_replot_a_saved_run(tmp_path):
    saved = tmp_path / "saved" / "results.json"
    saved.parent.mkdir()
    shutil.copy(FIXTURE, saved)
    out = tmp_path / "again"
    files = replot(saved, out)
    assert len(files) == 3
    report = (out / "report.md").read_text()
    for path in files:
        assert f"]({path.name})" in report
        assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_replot_refuses_a_broken_file(tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text('{"schema": "testbed.results/1"}')
    with pytest.raises(InputError):
        replot(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_collective_plot_from_rows(tmp_path):
    from testbed.report.plotting import make_plots

    rows = [{"op": "allreduce", "algorithm": "ring", "bytes": b, "time_us": t, "model_time_us": m}
            for b, t, m in ((65536, 2800.0, 2000.0), (1048576, 7400.0, 2800.0))]
    doc = {"scenario": "x", "variants": [{"name": "direct", "collectives": rows}]}
    files = [p for p in make_plots(doc, tmp_path) if p.name == "collective_time.png"]
    assert files and files[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
