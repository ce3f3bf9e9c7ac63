"""The GitHub Actions workflow (.github/workflows/ci.yml) does what the README promises.

Parsed with PyYAML and checked step by step: a Linux runner; checkout; the
netem module loaded before the tests; the README's own test command under
sudo (the same setup.sh the Vagrant VM provisions with); the netem live tests
selected and a check that FAILS when they were skipped -- that check's script
is extracted from the workflow and run here on made-up JUnit files; the
flagship in --quick mode; results and report uploaded even when a step failed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
README = ROOT / "README.md"
FLAGSHIP_QUICK = "sudo .venv/bin/testbed run --quick --out results/ci"


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _job() -> dict:
    jobs = _workflow()["jobs"]
    assert len(jobs) == 1, f"expected one job, found {sorted(jobs)}"
    return next(iter(jobs.values()))


def _steps() -> List[dict]:
    return _job()["steps"]


def _index(predicate, what: str) -> int:
    for i, step in enumerate(_steps()):
        if predicate(step):
            return i
    raise AssertionError(f"the workflow has no step that {what}")


def _runs(step: dict) -> List[str]:
    return [line.strip() for line in str(step.get("run", "")).splitlines() if line.strip()]


def _readme_test_command() -> str:
    block = re.search(r"## Quick start.*?```\n(.*?)```", README.read_text(), re.S)
    assert block, "README has no quick start code block"
    lines = [line.strip() for line in block.group(1).splitlines() if line.strip()]
    tests = [line for line in lines if line.endswith("setup.sh test")]
    assert len(tests) == 1, lines
    return tests[0]


def test_triggers_and_runner():
    doc = _workflow()
    triggers = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare 'on' as true
    assert {"push", "pull_request"} <= set(triggers)
    assert _job()["runs-on"] == "ubuntu-latest"
    assert doc.get("permissions") == {"contents": "read"}


def test_step_order():
    checkout = _index(lambda s: str(s.get("uses", "")).startswith("actions/checkout@"), "checks out")
    netem_module = _index(lambda s: any("modprobe sch_netem" in l for l in _runs(s)),
                          "loads sch_netem")
    tests = _index(lambda s: _readme_test_command() in _runs(s), "runs the README test command")
    netem_tests = _index(lambda s: any("-m netem" in l for l in _runs(s)), "selects the netem tests")
    flagship = _index(lambda s: FLAGSHIP_QUICK in _runs(s), "runs the flagship in --quick mode")
    upload = _index(lambda s: str(s.get("uses", "")).startswith("actions/upload-artifact@"),
                    "uploads artifacts")
    assert checkout < netem_module < tests < netem_tests < flagship < upload


def test_c_engine_build_is_checked_after_setup():
    tests = _index(lambda s: _readme_test_command() in _runs(s), "runs the README test command")
    engine = _index(lambda s: any("import testbed.delayline._fastline" in l for l in _runs(s)),
                    "checks that the C delay-line engine was built")
    assert engine > tests
    line = next(l for l in _runs(_steps()[engine]) if "_fastline" in l)
    # run from / so the checkout's source tree cannot stand in for the installed package
    assert line.startswith("cd / && ") and ".venv/bin/python" in line


def test_readme_test_command_runs_as_is_under_sudo():
    command = _readme_test_command()
    assert command == "sudo ./setup.sh test"
    step = _steps()[_index(lambda s: command in _runs(s), "runs the README test command")]
    assert _runs(step) == [command]  # nothing added: exactly what users run


def test_netem_tests_are_selected_and_recorded():
    step = _steps()[_index(lambda s: any("-m netem" in l for l in _runs(s)), "selects netem tests")]
    pytest_line = next(l for l in _runs(step) if "-m netem" in l)
    assert pytest_line.startswith("sudo .venv/bin/python -m pytest ")
    assert "--junitxml=results/junit-netem.xml" in pytest_line
    assert "-rs" in pytest_line.split() and "--strict-markers" in pytest_line.split()
    assert step.get("if") is None, "the netem check must not be skipped or made optional"
    assert "continue-on-error" not in step


def _check_script() -> str:
    step = _steps()[_index(lambda s: "<<'EOF'" in str(s.get("run", "")), "checks the JUnit file")]
    match = re.search(r"python3 - (\S+) <<'EOF'\n(.*?)\nEOF\b", step["run"], re.S)
    assert match, "no 'python3 - FILE <<'EOF' ... EOF' check in the netem step"
    assert match.group(1) == "results/junit-netem.xml"
    return match.group(2)


def _junit(tests: int, skipped: int = 0, failures: int = 0, wrapped: bool = True) -> str:
    cases = "".join(
        f'<testcase classname="tests.integration.test_netem_live" name="t{i}">'
        + ('<skipped message="netem backend unavailable: kernel has no netem qdisc"/>'
           if i < skipped else "")
        + "</testcase>" for i in range(tests))
    suite = (f'<testsuite name="pytest" tests="{tests}" skipped="{skipped}" '
             f'failures="{failures}" errors="0">{cases}</testsuite>')
    return f"<testsuites>{suite}</testsuites>" if wrapped else suite


@pytest.mark.parametrize("xml,ok", [
    (_junit(12), True),
    (_junit(12, wrapped=False), True),
    (_junit(12, skipped=1), False),
    (_junit(12, skipped=12), False),
    (_junit(0), False),
    (_junit(12, failures=1), False),
], ids=["ran", "ran-bare-suite", "one-skipped", "all-skipped", "none-collected", "failed"])
def test_junit_check_fails_when_netem_tests_skipped(tmp_path, xml, ok):
    script = tmp_path / "check.py"
    script.write_text(_check_script())
    junit = tmp_path / "junit.xml"
    junit.write_text(xml)
    proc = subprocess.run([sys.executable, str(script), str(junit)], capture_output=True,
                          text=True, timeout=30)
    assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
    if not ok and "skipped" in xml and 'skipped="0"' not in xml:
        assert "kernel has no netem qdisc" in proc.stderr  # the reason is shown


def test_flagship_quick_and_artifacts():
    assert any(FLAGSHIP_QUICK in _runs(s) for s in _steps())
    uploads = [s for s in _steps() if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    paths = "\n".join(str(s["with"]["path"]) for s in uploads)
    assert "results/" in paths.split()  # results.json, report, plots, JUnit, doctor
    assert "results/ci/report.md" in paths.split()
    for step in uploads:
        assert step.get("if") == "always()", f"{step.get('name')}: upload also after a failure"
        assert re.fullmatch(r"actions/upload-artifact@v[4-9]", step["uses"])
    names = [s["with"]["name"] for s in uploads]
    assert len(set(names)) == len(names), "artifact names must differ"


def test_ci_run_script_is_still_the_readme_command_then_the_stock_kernel_lane():
    # .ci/run stays the README's test command (the workflow adds sudo), then
    # the lane the README documents beside it (issue 14: CI runs it after test)
    lines = [l for l in (ROOT / ".ci" / "run").read_text().splitlines()
             if l.strip() and not l.startswith("#") and not l.startswith("set ")
             and not l.startswith("cd ")]
    assert lines == [_readme_test_command().replace("sudo ", ""), "./setup.sh vmtest"]
    assert "sudo ./setup.sh vmtest" in (ROOT / "README.md").read_text()
