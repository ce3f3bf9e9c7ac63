"""Property-based fuzzing of every input a user gives the testbed (hypothesis).

Inputs: scenario files (a valid skeleton with one corruption: wrong types,
unknown keys, out-of-range numbers, bad units, shell metacharacters, path
traversal, very long names, unicode, YAML tags; and YAML text corruptions),
link profiles (``LinkProfile.from_user``, ``resolve_link``), ``--set``
overrides (``apply_overrides``, ``testbed run --set``, ``testbed up --set``)
and whole argument lists (``testbed.cli.main(argv)``).

The property, for every generated case: either the input is valid -- the CLI
reaches the step where it would start changing the machine, which the
``no_side_effects`` fixture turns into :class:`ReachedAction` -- or it is
refused with exit code 2 and exactly one stderr line naming the field (exit 3
with a fix hint only when the machine cannot do a valid request); never a
traceback, never another exception, never a lab (no ``tb.fz-`` namespace, no
``fz-`` state directory). Where the corruption is known, the line must name
its field. Runs are deterministic (``derandomize=True``) and need no root;
about 1,300 cases in all (``EXAMPLES`` below).

Bugs fuzzing found have plain regression tests at the end; their inputs
(keys with a line break, a blank ``--set`` item, a wrong ``measure`` beside a
``quick`` section) are in the generators too, so fuzzing keeps reaching them.
"""

from __future__ import annotations

import ast
import copy
import math
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbed import cli
from testbed.errors import InputError
from testbed.overrides import apply_overrides
from testbed.profile import USER_FIELDS, LinkProfile, LinkSpec, resolve_link
from testbed.presets import load_presets

REPO_ROOT = Path(__file__).resolve().parents[2]
IS_ROOT = os.geteuid() == 0

EXAMPLES = {
    "scenario_valid": 100,
    "scenario_corrupt": 200,
    "scenario_text": 100,
    "profile": 200,
    "resolve_link": 100,
    "overrides": 150,
    "run_set": 100,
    "up_set": 150,
    "argv": 200,
}


def fuzz_settings(name: str):
    return settings(max_examples=EXAMPLES[name], deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])


# -- valid input is detected, never acted on ----------------------------------------------------

STATE_DIR = Path(os.environ.get("TESTBED_STATE_DIR", "/run/testbed"))
NETNS_DIR = Path("/run/netns")


class ReachedAction(BaseException):
    """Validation passed: the CLI got to a step that would change the machine.

    A BaseException, so that no ``except Exception`` on the way can swallow it.
    """

    def __init__(self, step: str, args: tuple, kwargs: dict):
        super().__init__(step)
        self.step = step
        self.args_seen = args
        self.kwargs_seen = kwargs


def _stop_at(step: str):
    def stop(*args, **kwargs):
        raise ReachedAction(step, args, kwargs)

    return stop


def fz_traces() -> List[str]:
    """Namespaces and state directories of ``fz-`` labs (read from /run, no subprocess)."""
    found = []
    if NETNS_DIR.is_dir():
        found += [f"namespace {n}" for n in os.listdir(NETNS_DIR) if n.startswith("tb.fz-")]
    if STATE_DIR.is_dir():
        found += [f"state dir {n}" for n in os.listdir(STATE_DIR) if n.startswith("fz-")]
    return found


@pytest.fixture
def no_side_effects(monkeypatch, tmp_path):
    """Every step where the CLI would start changing the machine raises ReachedAction.

    ``state.create_lab_dir`` (the first thing ``Lab.create`` writes, after all
    validation), ``runner.run_scenario`` (after the scenario validated),
    ``teardown.teardown`` (``down``/``clean``), ``os.execvp`` (``exec``) and
    ``doctor.probe``. So no lab, guard chain, state or output directory is made.
    """
    from testbed import doctor, runner
    from testbed.lab import state, teardown

    monkeypatch.setattr(state, "create_lab_dir", _stop_at("create_lab_dir"))
    monkeypatch.setattr(runner, "run_scenario", _stop_at("run_scenario"))
    monkeypatch.setattr(teardown, "teardown", _stop_at("teardown"))
    monkeypatch.setattr(os, "execvp", _stop_at("execvp"))
    monkeypatch.setattr(doctor, "probe", _stop_at("doctor"))
    monkeypatch.chdir(tmp_path)
    handler = signal.getsignal(signal.SIGTERM)  # testbed run installs its own
    before = fz_traces()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, handler)
    after = fz_traces()
    assert after == before, f"fuzzed input created {sorted(set(after) - set(before))}"


# -- strategies ------------------------------------------------------------------------

SHELL = ["; rm -rf /", "$(reboot)", "`id`", "a|b", "a && b", "x > /etc/passwd", "'\"", "\\",
         "a\nb", "${IFS}", "*", "~root", "\x00", "-rf", "--help"]
TRAVERSAL = ["../", "../../etc/passwd", "/etc/shadow", "..", "a/../../b", "%2e%2e%2f", "/tmp/x"]
UNICODE = ["ümlaut", "名前", "🚀", "\u202e", "ǅ", "İ", "ﬁ", "a\u00a0b", "ａ"]
NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")

weird_strings = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30),
    st.sampled_from(SHELL + TRAVERSAL + UNICODE),
    st.integers(64, 3000).map(lambda n: "a" * n),
)
# mapping keys, line breaks included (a key with one once broke the one-line error)
keys = st.one_of(weird_strings, st.sampled_from(["a\nb", "x\r\ny", "\n", "tail\n", "\u2028"]))
numbers = st.one_of(st.integers(-10**20, 10**20), st.floats(allow_nan=True, allow_infinity=True),
                    st.booleans())
scalars = st.one_of(st.none(), numbers, weird_strings)
junk = st.recursive(scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=3), st.dictionaries(keys, kids, max_size=3)), max_leaves=6)
containers = st.one_of(st.lists(scalars, max_size=2), st.dictionaries(keys, scalars, max_size=2))


def bad_names():
    return st.one_of(
        weird_strings.filter(lambda s: not NAME_RE.fullmatch(s)),
        st.sampled_from(["", "-a", "Upper", "a" * 33, "a b", "a.b", "a/b", "a_b"]),
        numbers, containers)


def bad_units():
    """Strings and values no tc-like unit parser may accept."""
    return st.one_of(
        st.text(max_size=8).map(lambda s: "zz" + s),
        st.sampled_from(["5 lightyears", "-5ms", "-1Mbit", "ms", "Mbit", "5msms", "5;rm -rf /",
                         "$(id)ms", "`id`", "nan", "inf", "-inf", "1e999ms", "..", "%"]),
        st.booleans(), containers,
        st.floats(max_value=-1e-9), st.integers(max_value=-1),
        st.just(math.nan), st.just(math.inf))


def outside(lo: float, hi: float, integer: bool, lo_open: bool = False):
    """Numbers outside [lo, hi] (or (lo, hi]), plus values of the wrong type."""
    below = st.floats(max_value=lo, exclude_max=not lo_open, allow_nan=False)
    above = st.floats(min_value=hi, exclude_min=True, allow_nan=False)
    wrong = [st.booleans(), containers, st.just(math.nan), st.sampled_from(["5", "1.5", "ten", ""])]
    if integer:
        wrong.append(st.floats(allow_nan=False))  # strict: no float is an integer
        below = st.integers(max_value=int(math.ceil(lo)) - (0 if lo_open else 1))
        above = st.integers(min_value=int(hi) + 1)
    return st.one_of(below, above, *wrong)


BASE = {
    "name": "fz-scn",
    "description": "fuzz base",
    "topology": "pair",
    "links": {"link": {"rate": "100Mbit", "delay": "2ms", "loss": "0.1%", "queue": "1.5bdp",
                       "mtu": 1500, "jitter_distribution": "normal"}},
    "host_sysctls": {"net.ipv4.tcp_rmem": "4096 131072 16777216"},
    "endpoints": {"src": "h1", "dst": "h2"},
    "variants": [{"name": "a", "description": "A"}, {"name": "b", "links": {"link": "internet-transit"}}],
    "measure": {"ping": {"count": 5, "interval_s": 0.2}, "owd": {"count": 10, "size_bytes": 64},
                "tcp": {"duration_s": 2, "streams": 1, "cc": "cubic", "window": "4MiB"},
                "udp": {"duration_s": 1, "bitrate": "10Mbit"}, "path": {"max_hops": 8},
                "steady": {"tolerance_pct": 10}},
    "repeats": 1,
    "quick": {"measure.tcp.duration_s": 1},
    "fidelity": {"rtt_tolerance_pct": 10, "throughput_tolerance_pct": 15, "jitter_tolerance_pct": 30},
}

# (path, strategy of values that must be refused there); the error must name the path
BAD_VALUES: List[Tuple[tuple, Any]] = [
    (("name",), bad_names()),
    (("description",), st.one_of(numbers, containers, st.none())),
    (("topology",), st.one_of(bad_names(), st.sampled_from(["nosuchtopo", "pair2", "mesh"]))),
    (("links",), st.one_of(numbers, weird_strings, st.lists(scalars, max_size=2))),
    (("links", "link"), st.one_of(st.none(), numbers, st.lists(scalars, max_size=2),
                                  st.text(max_size=8).map(lambda s: "no-such-preset-" + s))),
    (("links", "link", "rate"), bad_units()),
    (("links", "link", "delay"), bad_units()),
    (("links", "link", "loss"), st.one_of(bad_units(), st.sampled_from(["150%", "100.5%", 101]))),
    (("links", "link", "mtu"), st.one_of(st.integers(max_value=67), st.integers(min_value=65536),
                                         st.sampled_from(["zz", "1500.5", 1500.5, True]), containers)),
    (("links", "link", "queue"), st.one_of(st.sampled_from(["zz", "-5", "-1.5bdp", "5 parsecs", True]),
                                           containers, st.integers(max_value=-1))),
    (("links", "link", "jitter_distribution"),
     st.one_of(st.sampled_from(["gaussian", "", "normal;id", "PARETO-X"]), numbers, containers)),
    (("variants",), st.one_of(st.just([]), weird_strings, numbers, st.dictionaries(keys, scalars),
                              st.just([{"name": f"v{i}"} for i in range(33)]))),
    (("variants", 0, "name"), bad_names()),
    (("variants", 1, "links", "link"), st.one_of(st.none(), numbers,
                                                 st.text(max_size=8).map(lambda s: "no-such-" + s))),
    (("measure",), st.one_of(st.just({}), weird_strings, numbers, st.lists(scalars, max_size=2))),
    (("measure", "ping", "count"), outside(1, 100_000, integer=True)),
    (("measure", "ping", "interval_s"), outside(0.002, 60.0, integer=False)),
    (("measure", "owd", "size_bytes"), outside(32, 65_507, integer=True)),
    (("measure", "tcp", "duration_s"), outside(0, 3600.0, integer=False, lo_open=True)),
    (("measure", "tcp", "streams"), outside(1, 128, integer=True)),
    (("measure", "tcp", "cc"), st.one_of(st.sampled_from(["CUBIC", "a;b", "x" * 17, "", "$(id)"]),
                                          numbers, containers)),
    (("measure", "tcp", "window"), bad_units()),
    (("measure", "udp", "bitrate"), bad_units()),
    (("measure", "path", "max_hops"), outside(1, 64, integer=True)),
    (("measure", "steady", "tolerance_pct"), outside(0, 100.0, integer=False, lo_open=True)),
    (("repeats",), outside(1, 100, integer=True)),
    (("fidelity", "rtt_tolerance_pct"), outside(0, 1000.0, integer=False, lo_open=True)),
    (("host_sysctls", "net.ipv4.tcp_rmem"),
     st.one_of(st.sampled_from(SHELL[:9] + ["", "x" * 300, "1/2", "a=b"]), st.floats(), st.booleans(),
               containers, st.none())),
    (("endpoints",), st.one_of(weird_strings, numbers, st.lists(scalars, max_size=2))),
    (("endpoints", "src"), bad_names()),
    (("quick",), st.one_of(weird_strings, numbers, st.lists(scalars, max_size=2))),
]

# mappings that refuse unknown keys, and the keys a scenario may NOT have there
STRICT_MAPPINGS = [(), ("variants", 0), ("measure",), ("measure", "tcp"), ("measure", "ping"),
                   ("fidelity",), ("endpoints",), ("links", "link")]
OUTPUT_KEYS = ["out", "output", "path_out", "output_dir", "results_dir", "dir", "file", "log", "cwd"]


def _known_keys(mapping_path: tuple) -> set:
    node = BASE
    for part in mapping_path:
        node = node[part]
    known = set(node)
    if mapping_path == ():
        known |= {"params", "repeats"}
    if mapping_path == ("variants", 0):
        known |= {"params", "links"}
    if mapping_path == ("measure",):
        known |= {"collective", "path"}
    if mapping_path == ("links", "link"):
        known |= set(USER_FIELDS) | {"preset", "forward", "reverse"}
    return known


def _dotted(path: Sequence[Any]) -> str:
    return ".".join(str(p) for p in path)


def _set_path(doc: dict, path: tuple, value: Any) -> None:
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


@st.composite
def corrupted_scenarios(draw):
    """(document, fields the error may name) with exactly one corruption."""
    doc = copy.deepcopy(BASE)
    kind = draw(st.sampled_from(["value", "value", "value", "unknown_key", "missing", "special"]))
    if kind == "value":
        path, values = draw(st.sampled_from(BAD_VALUES))
        value = draw(values)
        _set_path(doc, path, value)
        return doc, [_dotted(path)]
    if kind == "unknown_key":
        where = draw(st.sampled_from(STRICT_MAPPINGS))
        key = draw(st.one_of(st.sampled_from(OUTPUT_KEYS), keys.filter(str.strip)))
        if key in _known_keys(where):
            key = "zz-" + key
        _set_path(doc, where + (key,), draw(junk))
        return doc, [_dotted(where + (key,))]
    if kind == "missing":
        path = draw(st.sampled_from([("name",), ("topology",), ("variants",), ("measure",),
                                     ("variants", 0, "name"), ("endpoints", "src")]))
        node = doc
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]
        return doc, [_dotted(path)]
    case = draw(st.sampled_from(["dup_variant", "same_endpoints", "quick_value", "quick_path"]))
    if case == "dup_variant":
        doc["variants"][0]["name"] = "b"
        return doc, ["variants.1.name"]
    if case == "same_endpoints":
        doc["endpoints"]["dst"] = "h1"
        return doc, ["endpoints.dst"]
    if case == "quick_value":
        doc["quick"]["measure.tcp.duration_s"] = draw(outside(0, 3600.0, integer=False, lo_open=True))
        return doc, ["quick.measure.tcp.duration_s", "measure.tcp.duration_s"]
    bad_key = draw(st.sampled_from(["measure.bogus.x", "measure..x", "variants.9.name", "name.x"]))
    doc["quick"] = {bad_key: 1}
    return doc, ["quick." + bad_key, "measure.bogus", "name"]


@st.composite
def valid_scenarios(draw):
    names = st.from_regex(NAME_RE, fullmatch=True)
    profile = st.fixed_dictionaries({}, optional={
        "rate": st.sampled_from(["10Gbit", "250Mbit", "1Gbit", "64kbit", 1_000_000, "1.5Gbit"]),
        "delay": st.sampled_from(["0ms", "1ms", "15ms", "2.5ms", "100us", "1s", 5]),
        "jitter": st.sampled_from(["0ms", "1ms", 0.5]),
        "jitter_distribution": st.sampled_from(["normal", "pareto", "paretonormal", "uniform"]),
        "loss": st.sampled_from(["0%", "0.05%", "1%", 2]),
        "queue": st.sampled_from([100, "100pkt", "256KiB", "1.5bdp", "2xBDP"]),
        "mtu": st.sampled_from([68, 1500, 9000, "1500"]),
    })
    link = st.one_of(st.sampled_from(sorted(load_presets())), profile)
    measure = st.fixed_dictionaries({}, optional={
        "ping": st.fixed_dictionaries({"count": st.integers(1, 100_000),
                                       "interval_s": st.floats(0.002, 60.0)}),
        "tcp": st.fixed_dictionaries({"duration_s": st.floats(0.1, 3600.0),
                                      "streams": st.integers(1, 128)}),
        "udp": st.fixed_dictionaries({"bitrate": st.sampled_from(["10Mbit", "1Gbit", 5_000_000])}),
        "path": st.fixed_dictionaries({"max_hops": st.integers(1, 64)}),
    }).filter(bool)
    variant_names = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    doc = {
        "name": draw(names),
        "description": draw(st.text(max_size=40)),
        "topology": "pair",
        "links": {"link": draw(link)},
        "variants": [{"name": n, "links": draw(st.sampled_from([{}, {"link": draw(link)}]))}
                     for n in variant_names],
        "measure": draw(measure),
        "repeats": draw(st.integers(1, 100)),
        "fidelity": {"rtt_tolerance_pct": draw(st.floats(0.01, 1000.0))},
    }
    if draw(st.booleans()):
        doc["host_sysctls"] = {"net.ipv4.tcp_ecn": draw(st.sampled_from([0, 1, "2"]))}
    return doc


# -- judging one CLI call ------------------------------------------------------------------------

ERROR_RE = re.compile(r"^testbed: error: .*?\S: \S")


def cli_outcome(capsys, argv: List[str]) -> Tuple[str, Optional[str], Optional[ReachedAction]]:
    """Run ``cli.main(argv)``; check the contract; return (kind, stderr line, action)."""
    try:
        code = cli.main(argv)
    except ReachedAction as hit:
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err and not err.strip(), (argv, err)
        return "valid", None, hit
    except SystemExit as exc:  # argparse's --help / --version
        out, err = capsys.readouterr()
        assert exc.code == 0 and out.strip() and not err.strip(), (argv, exc.code, err)
        return "help", None, None
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, (argv, err)
    if code == 0:
        assert not err.strip(), (argv, err)
        return "ok", None, None
    lines = err.strip().split("\n")  # (not splitlines: it also splits at \x1c-\x1e, \x85 ...)
    assert len(lines) == 1, f"{argv}: exit {code} with {len(lines)} stderr lines: {err!r}"
    line = lines[0]
    assert code in (1, 2, 3) and line.startswith("testbed: error: "), (argv, code, line)
    if code == 2:
        assert ERROR_RE.match(line), f"{argv}: no 'field: message' in {line!r}"
    if code == 3:
        assert "(fix: " in line, f"{argv}: exit 3 without a fix hint: {line!r}"
    return f"exit {code}", line, None


def accepted(kind: str) -> bool:
    """Valid input: the action was reached, or (not root) refused only for want of root."""
    return kind == "valid" or (kind == "exit 3" and not IS_ROOT)


def names_field(line: str, source: str, fields: Sequence[str]) -> bool:
    """The one error line names one of ``fields`` (or a field inside or around it)."""
    prefix = f"testbed: error: {source}: "
    if not line.startswith(prefix):
        return False
    rest = line[len(prefix):]
    # the error keeps to one line by writing a line break in a field as \n or \r
    fields = [f.replace("\r", "\\r").replace("\n", "\\n") for f in fields]
    for want in fields:
        if rest.startswith(want + ": ") or rest.startswith(want + "."):
            return True
        # pydantic may report the containing field (e.g. the whole link value)
        parts = want.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            if rest.startswith(".".join(parts[:cut]) + ": "):
                return True
    return False


def _write(tmp_path: Path, doc: Any, name: str = "scn.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _tally(counts: Counter, name: str) -> None:
    print(f"{name}: {sum(counts.values())} cases: {dict(counts)}")


# -- scenario files ------------------------------------------------------------------------------

def test_valid_scenarios_are_accepted(no_side_effects, capsys, tmp_path):
    counts = Counter()

    @fuzz_settings("scenario_valid")
    @given(valid_scenarios())
    def check(doc):
        path = _write(tmp_path, doc)
        kind, line, hit = cli_outcome(capsys, ["run", str(path), "--out", str(tmp_path / "out")])
        counts[kind] += 1
        if kind == "exit 3" and not IS_ROOT:
            return
        assert kind == "valid" and hit.step == "run_scenario", f"valid scenario refused: {line}\n{doc}"
        scenario = hit.args_seen[0]
        assert scenario.name == doc["name"] and len(scenario.variants) == len(doc["variants"])

    check()
    _tally(counts, "valid scenarios")
    assert not (tmp_path / "out").exists()


def test_corrupted_scenarios_are_refused_naming_the_field(no_side_effects, capsys, tmp_path):
    counts = Counter()

    @fuzz_settings("scenario_corrupt")
    @given(corrupted_scenarios())
    def check(case):
        doc, fields = case
        path = _write(tmp_path, doc)
        kind, line, _ = cli_outcome(capsys, ["run", str(path), "--out", str(tmp_path / "out")])
        counts[kind] += 1
        assert kind == "exit 2", f"corruption at {fields} not refused ({kind})\n{doc}"
        assert names_field(line, str(path), fields), f"expected a field in {fields}: {line}"

    check()
    _tally(counts, "corrupted scenarios")
    assert not (tmp_path / "out").exists()


TAGS = ["!!python/object/apply:os.system [\"touch {mark}\"]", "!!python/name:os.system",
        "!!python/object/new:os.system [\"touch {mark}\"]", "!!python/module:os",
        "!!python/object:os.system {{}}", "!!binary aGk=", "!!set {{a, b}}", "!!timestamp 2001-12-14",
        "!!float .nan", "!!omap [a: 1]", "!!pairs [a: 1]", "!custom 1"]


@st.composite
def corrupted_texts(draw, mark: str):
    text = yaml.safe_dump(BASE, sort_keys=False)
    lines = text.splitlines()
    kind = draw(st.sampled_from(["tag", "duplicate", "truncate", "insert", "bytes", "top"]))
    if kind == "tag":
        keys = [i for i, l in enumerate(lines) if re.match(r"^\s*[a-z_]+: \S", l)]
        i = draw(st.sampled_from(keys))
        key = lines[i].split(":")[0]
        lines[i] = key + ": " + draw(st.sampled_from(TAGS)).format(mark=mark)
        return "\n".join(lines).encode()
    if kind == "duplicate":
        i = draw(st.sampled_from([i for i, l in enumerate(lines) if re.match(r"^[a-z]+: \S", l)]))
        lines.insert(i + 1, lines[i])
        return "\n".join(lines).encode()
    if kind == "truncate":
        return text[:draw(st.integers(0, len(text)))].encode()
    if kind == "insert":
        at = draw(st.integers(0, len(text)))
        piece = draw(st.one_of(st.text(max_size=12), st.sampled_from(["\t", ": :", "- -", "[", "{", "]",
                                                                      "&a", "*b", "%YAML 9", "---", "\x07"])))
        return (text[:at] + piece + text[at:]).encode("utf-8", "surrogatepass")
    if kind == "bytes":
        at = draw(st.integers(0, len(text)))
        return text[:at].encode() + draw(st.binary(min_size=1, max_size=4)) + b"\xff" + text[at:].encode()
    return draw(st.sampled_from([b"", b"- a\n- b\n", b"42\n", b"null\n", b"'just a string'\n", b"---\n---\n"]))


def test_corrupted_yaml_text_is_refused_or_valid_never_run(no_side_effects, capsys, tmp_path):
    mark = tmp_path / "PWNED"
    counts = Counter()

    @fuzz_settings("scenario_text")
    @given(corrupted_texts(str(mark)))
    def check(data):
        path = tmp_path / "scn.yaml"
        path.write_bytes(data)
        kind, line, _ = cli_outcome(capsys, ["run", str(path), "--out", str(tmp_path / "out")])
        counts[kind] += 1
        assert accepted(kind) or kind == "exit 2", (kind, line, data[:300])
        assert not mark.exists(), f"a YAML tag ran a command: {data[:300]!r}"

    check()
    _tally(counts, "corrupted YAML texts")
    assert counts["exit 2"] > counts["valid"] + counts["exit 3"] > 0, counts


@pytest.mark.parametrize("tag", [t for t in TAGS if t.startswith("!!python")])
def test_python_yaml_tags_are_refused_cleanly_and_never_run(no_side_effects, capsys, tmp_path, tag):
    mark = tmp_path / "PWNED"
    path = tmp_path / "evil.yaml"
    path.write_text("name: " + tag.format(mark=mark) + "\ntopology: pair\n")
    kind, line, _ = cli_outcome(capsys, ["run", str(path)])
    assert kind == "exit 2" and names_field(line, str(path), ["line 1 column 7"]), line
    assert not mark.exists()


@pytest.mark.parametrize("where", [(), ("variants", 0), ("measure", "tcp")], ids=["top", "variant", "step"])
@pytest.mark.parametrize("key", OUTPUT_KEYS + ["path"])
def test_a_scenario_has_no_key_that_names_a_file(no_side_effects, capsys, tmp_path, where, key):
    if key == "path" and where == ():
        where = ("variants", 0)  # (measure.path is a step; a top-level 'path' is just unknown)
    doc = copy.deepcopy(BASE)
    _set_path(doc, where + (key,), str(tmp_path / "elsewhere"))
    path = _write(tmp_path, doc)
    kind, line, _ = cli_outcome(capsys, ["run", str(path)])
    assert kind == "exit 2" and names_field(line, str(path), [_dotted(where + (key,))]), line
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("path,value", [
    (("name",), "../../tmp/escape"), (("name",), "/etc/x"), (("name",), "a;reboot"),
    (("variants", 0, "name"), "../x"), (("variants", 0, "name"), "$(id)"),
    (("topology",), "../pair"), (("host_sysctls",), {"net.ipv4.tcp_rmem/../../x": "1"}),
    (("host_sysctls",), {"kernel.panic": "1"}), (("host_sysctls", "net.ipv4.tcp_rmem"), "1; reboot"),
    (("measure", "tcp", "cc"), "cubic; id"), (("endpoints", "src"), "h1;id"),
])
def test_names_that_could_reach_a_path_or_shell_are_refused(no_side_effects, capsys, tmp_path, path, value):
    doc = copy.deepcopy(BASE)
    _set_path(doc, path, value)
    scenario = _write(tmp_path, doc)
    kind, line, _ = cli_outcome(capsys, ["run", str(scenario)])
    assert kind == "exit 2" and names_field(line, str(scenario), [_dotted(path)]), line


@pytest.mark.parametrize("name", ["../x", "a/b", "UPPER", "x" * 17, "-a", "a.b", "fz-ä", "", "a b"])
def test_lab_names_that_could_reach_a_path_are_refused(no_side_effects, capsys, name):
    kind, line, _ = cli_outcome(capsys, ["up", "pair", f"--name={name}"])
    assert kind == "exit 2" and line.startswith("testbed: error: name: "), line


# -- link profiles ---------------------------------------------------------------------------------

VALID_FIELD_VALUES = {
    "rate": ["10Gbit", "250Mbit", "1.5Gbit", "100mbit", "64kbit", 1_000_000, "1Gbps"],
    "delay": ["0ms", "1ms", "15ms", "2.5ms", "100us", "1s", 5, 0.5],
    "jitter": ["0ms", "1ms", 0.25],
    "jitter_distribution": ["normal", "pareto", "paretonormal", "uniform", "pareto-normal", "Normal"],
    "correlation": ["25%", "0%", 10],
    "loss": ["0.1%", "0%", "5%", 1, "99%"],
    "loss_model": ["random", "gilbert-elliott", "ge", "gilbert"],
    "loss_burst": [1, 4, "3pkt", 2.5],
    "duplicate": ["0%", "1%"],
    "corrupt": ["0%", "0.1%"],
    "reorder": ["0%", "1%"],
    "queue": [100, "100pkt", "256KiB", "1.5bdp", "2xBDP", "1MB"],
    "mtu": [68, 1500, 9000, "1500", 65535],
}


def field_value(field: str):
    return st.one_of(st.sampled_from(VALID_FIELD_VALUES[field]), st.sampled_from(VALID_FIELD_VALUES[field]),
                     bad_units(), weird_strings, numbers, st.none())


profiles = st.fixed_dictionaries({}, optional={f: field_value(f) for f in USER_FIELDS}).flatmap(
    lambda d: st.one_of(st.just(d), st.dictionaries(keys, scalars, max_size=1).map(
        lambda extra: {**d, **extra})))


def _check_input_error(exc: InputError, prefixes: Sequence[str]) -> None:
    assert "\n" not in str(exc), repr(str(exc))
    assert any(exc.field == p or exc.field.startswith(p + ".") for p in prefixes), (exc.field, prefixes)


def test_link_profiles_from_user_are_built_or_refused_naming_the_field():
    counts = Counter()

    @fuzz_settings("profile")
    @given(profiles)
    def check(data):
        try:
            profile = LinkProfile.from_user(data, field="links.fz")
        except InputError as exc:
            counts["refused"] += 1
            _check_input_error(exc, ["links.fz"])
            return
        counts["valid"] += 1
        assert set(data) <= set(USER_FIELDS), f"unknown field accepted: {data}"
        again = LinkProfile.from_user(profile.to_user(), field="again")
        assert again == profile, f"round trip changed the profile:\n{profile}\n{again}"

    check()
    _tally(counts, "link profiles")
    assert counts["valid"] and counts["refused"], counts


link_values = st.one_of(
    st.sampled_from(sorted(load_presets())),
    weird_strings,
    profiles,
    st.fixed_dictionaries({"preset": st.one_of(st.sampled_from(sorted(load_presets())), weird_strings)},
                          optional={"forward": st.one_of(profiles, scalars),
                                    "reverse": st.one_of(profiles, scalars),
                                    "loss": field_value("loss"), "delay": field_value("delay")}),
    numbers, st.none(), st.lists(scalars, max_size=2),
)


def test_resolve_link_gives_a_spec_or_refuses_naming_the_field():
    counts = Counter()
    presets = load_presets()

    @fuzz_settings("resolve_link")
    @given(link_values)
    def check(value):
        try:
            spec = resolve_link(value, "links.fz", presets=presets)
        except InputError as exc:
            counts["refused"] += 1
            _check_input_error(exc, ["links.fz", "presets"])
            return
        counts["valid"] += 1
        assert isinstance(spec, LinkSpec)
        assert resolve_link(spec.to_user(), "again", presets=presets) == spec

    check()
    _tally(counts, "resolve_link")
    assert counts["valid"] and counts["refused"], counts


# -- --set overrides -------------------------------------------------------------------------------

LEAF_PATHS = ["name", "topology", "repeats", "measure.tcp.duration_s", "measure.ping.count",
              "links.link.delay", "links.link.rate", "variants.0.name", "variants.1.links.link",
              "host_sysctls.net.ipv4.tcp_rmem", "quick.measure.tcp.duration_s", "fidelity.rtt_tolerance_pct"]
key_texts = st.one_of(
    st.sampled_from(LEAF_PATHS),
    st.lists(st.one_of(st.sampled_from(["measure", "tcp", "links", "variants", "0", "1", "9", "", " ",
                                        "name", "-1", "host_sysctls", "net.ipv4"]), weird_strings),
             min_size=1, max_size=4).map(".".join),
)
value_texts = st.one_of(
    st.sampled_from(["5", "2ms", "0.1%", "[a, b]", "{a: 1}", "", "~", "null", "true", "1e999", "-1",
                     "!!python/object/apply:os.system [id]", "!!binary aGk=", "\"unterminated", "[",
                     "{a: [1, {b: 2}]}", "*alias", "&a 1", "a: b: c", "'x' y", ".nan"]),
    weird_strings.filter(lambda s: "&" not in s and "*" not in s),
)
VALID_OVERRIDES = ["measure.tcp.duration_s=5", "measure.ping.count=20", "links.link.delay=5ms",
                   "variants.1.links.link=direct-interconnect", "repeats=3", "name=fz-other",
                   "measure.path.max_hops=5", "host_sysctls.net.ipv4.tcp_rmem=4096 87380 6291456",
                   "fidelity.rtt_tolerance_pct=20", "links.link=internet-transit", "description=",
                   "quick.measure.ping.count=3", "measure.udp.bitrate=1Gbit", "endpoints.src=h2",
                   "endpoints.dst=h1", "links.link.mtu=9000"]
override_items = st.one_of(
    st.sampled_from(VALID_OVERRIDES),
    st.tuples(key_texts, value_texts).map(lambda kv: f"{kv[0]}={kv[1]}"),
    keys,  # often without '=', blank or with a line break (each once a bug: tests at the end)
)


def test_apply_overrides_sets_the_value_or_refuses_naming_the_key():
    counts = Counter()

    @fuzz_settings("overrides")
    @given(st.lists(override_items, max_size=4))
    def check(items):
        doc = copy.deepcopy(BASE)
        try:
            out = apply_overrides(doc, items)
        except InputError as exc:
            counts["refused"] += 1
            assert exc.field and "\n" not in str(exc), repr(str(exc))
        else:
            counts["applied"] += 1
            assert isinstance(out, dict)
            last = items[-1] if items else ""
            key, _, text = last.partition("=")
            if key in LEAF_PATHS[:8]:
                node = out
                for part in key.split("."):
                    node = node[int(part)] if isinstance(node, list) else node[part]
                assert node == (yaml.safe_load(text) if text.strip() else None), (last, node)
        assert doc == BASE, "apply_overrides changed the caller's document"

    check()
    _tally(counts, "apply_overrides")
    assert counts["applied"] and counts["refused"], counts


def test_run_set_overrides_are_applied_or_refused(no_side_effects, capsys, tmp_path):
    scenario = _write(tmp_path, BASE)
    counts = Counter()

    @fuzz_settings("run_set")
    @given(st.lists(override_items, min_size=1, max_size=3), st.booleans())
    def check(items, quick):
        argv = ["run", str(scenario), "--out", str(tmp_path / "out")] + (["--quick"] if quick else [])
        for item in items:
            argv += ["--set", item]
        kind, line, _ = cli_outcome(capsys, argv)
        counts[kind] += 1
        assert accepted(kind) or kind == "exit 2", (kind, line, items)

    check()
    _tally(counts, "run --set")
    assert (counts["valid"] or counts["exit 3"]) and counts["exit 2"], counts


UP_KEYS = ["link.delay", "link.rate", "link.loss", "link.mtu", "link.queue", "link.bogus", "link",
           "direct.delay", "transit-hop.loss", "site-fabric.rate", "nolink.delay", "block", "backend",
           "seed", "hosts_per_site", "path", "transit_hops", "sites", "name", "link.forward.delay"]
UP_VALUES = ["5ms", "1Gbit", "0.1%", "9000", "100", "-1", "0", "99", "100", "direct", "transit",
             "sideways", "auto", "userspace", "netem", "[cw, gcp]", "[a, a]", "[a, b, c]", "[1, 2]",
             "[averyveryverylongsitename, b]", "['a b', c]", "10.250.0.0/16", "10.0.0.0/30",
             "300.1.1.1/16", "{delay: 5ms}", "true", "", "~", "internet-transit"]


def test_up_set_overrides_are_refused_or_would_build_never_built(no_side_effects, capsys):
    counts = Counter()
    names = iter(range(10**6))

    @fuzz_settings("up_set")
    @given(st.sampled_from(["pair", "pair", "two-clouds", "two-clouds", "mesh", "../pair"]),
           st.lists(st.tuples(st.one_of(st.sampled_from(UP_KEYS), key_texts),
                              st.one_of(st.sampled_from(UP_VALUES), value_texts)),
                    min_size=1, max_size=3))
    def check(topology, items):
        argv = ["up", topology, "--name", f"fz-{next(names)}"]
        for key, value in items:
            argv += ["--set", f"{key}={value}"]
        kind, line, hit = cli_outcome(capsys, argv)
        counts[kind] += 1
        assert kind in ("valid", "exit 2", "exit 3"), (kind, line, argv)
        if kind == "valid":
            assert hit.step == "create_lab_dir", hit.step
        assert not fz_traces(), f"{argv} left {fz_traces()}"

    check()
    _tally(counts, "up --set")
    assert (counts["valid"] or counts["exit 3"]) and counts["exit 2"], counts


# -- whole argument lists ----------------------------------------------------------------------------

COMMANDS = ["doctor", "run", "up", "exec", "status", "down", "clean", "list"]
TOKENS = COMMANDS + ["--json", "--all", "--quick", "--set", "--out", "--name", "--cli", "--", "-h",
                     "--help", "--version", "--bogus", "-x", "pair", "two-clouds", "direct-vs-transit",
                     "fz-1", "fz-lab", "h1", "link.delay=5ms", "block=10.250.0.0/16", "=", "a=b=c",
                     "nosuch.yaml", "/nonexistent/x.yaml"]
tokens = st.one_of(st.sampled_from(TOKENS), st.sampled_from(TOKENS), weird_strings)
argvs = st.one_of(
    st.lists(tokens, max_size=6),
    st.tuples(st.sampled_from(COMMANDS), st.lists(tokens, max_size=5)).map(lambda t: [t[0]] + t[1]),
)


def test_any_argument_list_gets_a_clean_answer(no_side_effects, capsys):
    counts = Counter()

    @fuzz_settings("argv")
    @given(argvs)
    def check(argv):
        kind, line, _ = cli_outcome(capsys, argv)
        counts[kind] += 1
        assert not fz_traces(), f"{argv} left {fz_traces()}"

    check()
    _tally(counts, "argv")
    assert counts["exit 2"] and (counts["valid"] + counts["ok"] + counts["help"]), counts


# -- the package never uses a shell or an unsafe YAML loader ------------------------------------------

def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def test_no_shell_no_unsafe_yaml_no_eval_in_the_package():
    problems = []
    for path in sorted((REPO_ROOT / "testbed").rglob("*.py")) + sorted((REPO_ROOT / "topologies").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for call in _calls(tree):
            where = f"{path.relative_to(REPO_ROOT)}:{call.lineno}"
            name = ast.unparse(call.func)
            if any(k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                   for k in call.keywords):
                problems.append(f"{where}: {name}(shell=...)")
            if name in ("os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput",
                        "eval", "exec", "yaml.unsafe_load", "yaml.full_load", "pickle.loads"):
                problems.append(f"{where}: {name}()")
            if name == "yaml.load":
                loader = [ast.unparse(k.value) for k in call.keywords if k.arg == "Loader"]
                if not loader or "Safe" not in loader[0]:
                    problems.append(f"{where}: yaml.load without a SafeLoader")
    assert not problems, "\n".join(problems)


# -- regressions: bugs fuzzing found (their inputs are in the generators above too) ----------------

def _scenario_text(extra: str) -> str:
    return "name: fz-bug\ntopology: pair\nvariants: [{name: a}]\nmeasure: {ping: {count: 2}}\n" + extra


@pytest.mark.parametrize("via", ["file", "--set"])
def test_recursive_yaml_alias_is_refused_with_exit_2(no_side_effects, capsys, tmp_path, via):
    path = tmp_path / "rec.yaml"
    if via == "file":
        path.write_text(_scenario_text("params: {x: &a [*a]}\n"))
        argv = ["run", str(path)]
    else:
        path.write_text(_scenario_text(""))
        argv = ["run", str(path), "--set", "params.x=&a [*a]"]
    kind, line, _ = cli_outcome(capsys, argv)
    assert kind == "exit 2", (kind, line)


DEEP = "[" * 3000 + "]" * 3000


@pytest.mark.parametrize("via", ["file", "run --set", "up --set"])
def test_deeply_nested_yaml_is_refused_with_exit_2(no_side_effects, capsys, tmp_path, via):
    path = tmp_path / "deep.yaml"
    path.write_text(_scenario_text("params: {x: " + DEEP + "}\n" if via == "file" else ""))
    argv = {"file": ["run", str(path)], "run --set": ["run", str(path), "--set", "params.x=" + DEEP],
            "up --set": ["up", "pair", "--name", "fz-deep", "--set", "x=" + DEEP]}[via]
    kind, line, _ = cli_outcome(capsys, argv)
    assert kind == "exit 2", (kind, line)


LAUGHS = "params:\n  a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 9))


def test_billion_laughs_scenario_is_refused_quickly(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(_scenario_text(LAUGHS))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    try:
        proc = subprocess.run([sys.executable, "-m", "testbed.cli", "run", str(path), "--out",
                               str(tmp_path / "out")], capture_output=True, text=True, timeout=10,
                              env=env, cwd=str(tmp_path))
    except subprocess.TimeoutExpired:
        pytest.fail("validating a 2 KB scenario took more than 10 s")
    assert proc.returncode == 2, proc.stderr[-500:]


@pytest.mark.parametrize("extra,field", [
    ("params: {bogus: 1}\n", "params.bogus"),
    ("endpoints: {src: h9, dst: h2}\n", "endpoints.src"),
    ("links: {lnik: {delay: 5ms}}\n", "links.lnik"),
    ("measure: {udp: {bitrate: null}}\n", "measure.udp.bitrate"),
], ids=["unknown-param", "unknown-host", "misspelt-link", "null-bitrate"])
def test_scenario_checked_against_its_topology_before_running(no_side_effects, capsys, tmp_path,
                                                               extra, field):
    path = tmp_path / "gap.yaml"
    text = _scenario_text(extra)
    if extra.startswith("measure:"):
        text = text.replace("measure: {ping: {count: 2}}\n", "")
    path.write_text(text)
    kind, line, _ = cli_outcome(capsys, ["run", str(path)])
    assert kind == "exit 2" and names_field(line, str(path), [field]), (kind, line)


def test_wrong_type_under_measure_is_blamed_on_measure_not_quick(no_side_effects, capsys, tmp_path):
    doc = copy.deepcopy(BASE)
    doc["measure"] = "none"
    path = _write(tmp_path, doc)
    kind, line, _ = cli_outcome(capsys, ["run", str(path)])
    assert kind == "exit 2" and names_field(line, str(path), ["measure"]), line


def test_error_naming_a_key_with_a_line_break_stays_one_line(no_side_effects, capsys, tmp_path):
    doc = copy.deepcopy(BASE)
    doc["a\nb"] = 1
    path = _write(tmp_path, doc)
    kind, line, _ = cli_outcome(capsys, ["run", str(path)])
    assert kind == "exit 2", (kind, line)


BAD_TAGGED = ["!!int zz", "!!float zz", "!!timestamp 2001-13-45", "!!bool maybe"]


@pytest.mark.parametrize("via", ["file", "run --set", "up --set"])
@pytest.mark.parametrize("tagged", BAD_TAGGED)
def test_explicit_yaml_tag_with_a_bad_value_is_refused_with_exit_2(no_side_effects, capsys, tmp_path,
                                                                    tagged, via):
    path = tmp_path / "tagged.yaml"
    path.write_text(_scenario_text("description: " + tagged + "\n" if via == "file" else ""))
    argv = {"file": ["run", str(path)], "run --set": ["run", str(path), "--set", "description=" + tagged],
            "up --set": ["up", "pair", "--name", "fz-tag", "--set", "seed=" + tagged]}[via]
    kind, line, _ = cli_outcome(capsys, argv)
    assert kind == "exit 2", (kind, line)


def test_empty_set_item_is_refused_naming_the_option(no_side_effects, capsys, tmp_path):
    with pytest.raises(InputError) as info:
        apply_overrides(copy.deepcopy(BASE), [""])
    assert info.value.field.strip(), repr(str(info.value))


def test_name_with_a_trailing_line_break_is_refused(no_side_effects, capsys, tmp_path):
    """testbed/scenario.py matched names with ``re.match`` and ``$``, which also matches
    before a final line break: "fz-scn\\n" was a valid name (found by the name fuzzing)."""
    doc = copy.deepcopy(BASE)
    doc["name"] += "\n"
    path = _write(tmp_path, doc)
    kind, line, _ = cli_outcome(capsys, ["run", str(path)])
    assert kind == "exit 2" and names_field(line, str(path), ["name"]), (kind, line)
