"""Rough edges a new user hit (issue 17, item 8): each one line and exit 2, or a clean exit.

Oracle: ``testbed.cli.main``'s exit code and its one stderr line; for the
broken pipe, a real ``testbed`` process whose reader went away.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from testbed import cli
from testbed.scenario import parse_scenario

IS_ROOT = os.geteuid() == 0


def _main(capsys, argv):
    code = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def test_an_algorithm_that_does_not_implement_the_op_is_refused_before_a_lab(capsys):
    code, err = _main(capsys, ["collective", "--topology", "star", "--op", "alltoall",
                               "--algo", "hierarchical", "--set", "hosts=4"])
    assert code == 2
    assert len(err) == 1 and err[0].startswith("testbed: error: algo: hierarchical does not implement alltoall")


def test_set_with_lab_is_refused_not_ignored(capsys):
    code, err = _main(capsys, ["collective", "--lab", "nosuchlab", "--set", "fabric.rate=1Gbit"])
    assert code == 2
    assert len(err) == 1 and "set:" in err[0] and "--lab" in err[0]


def test_a_scenario_collective_with_an_unimplemented_algorithm_fails_at_load():
    doc = {"name": "x", "topology": "star", "variants": [{"name": "a"}],
           "measure": {"collective": {"op": "alltoall", "algorithm": "hierarchical"}}}
    with pytest.raises(Exception) as info:
        parse_scenario(doc)
    assert getattr(info.value, "field", "").startswith("measure.collective")
    assert "does not implement alltoall" in str(info.value)


@pytest.mark.parametrize("item,field", [
    ("host_sysctls.x=1", "host_sysctls.x"),
    ("host.kernel.panic=1", "host.kernel.panic"),
])
def test_host_sysctls_on_up_are_judged_as_sysctls_not_links(capsys, item, field):
    code, err = _main(capsys, ["up", "pair", "--name", "ut-sysctl", "--set", item])
    assert code == 2
    assert len(err) == 1 and f"{field}:" in err[0] and "link" not in err[0].lower(), err


def test_up_help_names_seed_and_host_sysctls(capsys):
    with pytest.raises(SystemExit):
        cli.main(["up", "--help"])
    out = capsys.readouterr().out
    assert "seed=" in out and "host.SYSCTL=" in out


@pytest.mark.skipif(not IS_ROOT, reason="status and clean need root")
@pytest.mark.parametrize("verb", ["status", "clean"])
def test_a_lab_that_does_not_exist_is_named_as_such(capsys, verb):
    code, err = _main(capsys, [verb, "nosuchlab42"])
    assert code == 2
    assert len(err) == 1 and "no lab named 'nosuchlab42'" in err[0]


def test_a_closed_pipe_ends_quietly():
    """``testbed list | head -0``: the reader is gone before anything is written."""
    proc = subprocess.Popen([sys.executable, "-m", "testbed.cli", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # before the interpreter has even started: every write fails
    _out, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err.decode()
    assert proc.returncode == 141


# --out (issue 17, 8b): one line and exit 2, never a traceback; a folder is never mixed


def _run_out(capsys, out, *extra):
    return _main(capsys, ["run", "--quick", "--out", str(out), *extra])


def test_out_onto_a_file_is_bad_input(capsys, tmp_path):
    target = tmp_path / "a-file"
    target.write_text("x")
    code, err = _run_out(capsys, target)
    assert code == 2 and len(err) == 1 and err[0].startswith("testbed: error: out:") and "not a folder" in err[0]


def test_out_under_a_file_is_bad_input(capsys, tmp_path):
    target = tmp_path / "a-file"
    target.write_text("x")
    code, err = _run_out(capsys, target / "sub")
    assert code == 2 and len(err) == 1 and "is a file" in err[0]


def test_a_non_empty_out_folder_is_refused_without_force(capsys, tmp_path):
    (tmp_path / "rtt_cdf.png").write_bytes(b"old plot")
    code, err = _run_out(capsys, tmp_path)
    assert code == 2 and len(err) == 1 and "--force" in err[0]
    assert (tmp_path / "rtt_cdf.png").read_bytes() == b"old plot"  # nothing touched


def test_force_removes_only_an_earlier_runs_outputs(tmp_path):
    for name in ("results.json", "report.md", "rtt_cdf.png", "notes.txt"):
        (tmp_path / name).write_text("old")
    cli._remove_previous_run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.skipif(IS_ROOT, reason="root may write anywhere: the check is for users")
def test_an_unwritable_out_is_bad_input(capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, err = _run_out(capsys, locked / "out")
    assert code == 2 and "cannot write" in err[0]
