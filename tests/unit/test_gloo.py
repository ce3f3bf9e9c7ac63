"""The gloo backend's kernel-free parts: argv, environment, parsing, rows, process handling."""

import json
import subprocess
import sys
import time

import pytest

from testbed.collectives import gloo, gloo_worker, ops
from testbed.collectives.table import row_dict
from testbed.errors import EnvironmentProblem, InputError, RunError, ToolError

SIZES = [4 << 20, 1000]


def _hello(n=4):
    return json.dumps({"kind": "hello", "torch": "2.13.0+cpu", "world_size": n})


def _size(op, size, n=4, **extra):
    doc = {"kind": "size", "size_bytes": size, "count": ops.count_for_size(op, size, n)}
    doc.update(extra or {"call": "all_reduce", "times_s": [0.010, 0.030], "wrong": 0})
    return json.dumps(doc)


# ------------------------------------------------------------------ argv and env

def test_worker_argv_is_accepted_by_the_worker_parser():
    argv = gloo.worker_argv("allgather", SIZES, iters=7, warmup=2, timeout_s=90,
                            python="/usr/bin/python3")
    assert argv[:3] == ["/usr/bin/python3", "-m", "testbed.collectives.gloo_worker"]
    args = gloo_worker.parse_args(argv[3:])
    assert (args.op, args.sizes, args.iters, args.warmup, args.timeout_s) == (
        "allgather", SIZES, 7, 2, 90.0)


@pytest.mark.parametrize("op,sizes", [("allreducee", SIZES), ("allreduce", [])])
def test_worker_argv_rejects_bad_input(op, sizes):
    with pytest.raises(InputError):
        gloo.worker_argv(op, sizes, 5, 1, 60)


@pytest.mark.parametrize("argv", [["--op", "allreduce", "--sizes", "4M"],
                                  ["--op", "allreduce", "--sizes", "-1"],
                                  ["--op", "allreduce", "--sizes", "8", "--iters", "0"],
                                  ["--op", "nope", "--sizes", "8"]])
def test_worker_parser_rejects_bad_arguments(argv):
    with pytest.raises(SystemExit):
        gloo_worker.parse_args(argv)


def test_worker_env_sets_the_rendezvous_and_the_lab_interface():
    base = {"PATH": "/usr/bin", "PYTHONPATH": f"/elsewhere:{gloo.PACKAGE_PARENT}"}
    env = gloo.worker_env(2, 4, "10.203.0.2", 29511, "gcp-h1-eth0", base=base)
    assert {k: env[k] for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                                "GLOO_SOCKET_IFNAME", "OMP_NUM_THREADS")} == {
        "RANK": "2", "WORLD_SIZE": "4", "MASTER_ADDR": "10.203.0.2", "MASTER_PORT": "29511",
        "GLOO_SOCKET_IFNAME": "gcp-h1-eth0", "OMP_NUM_THREADS": "1"}
    assert env["PATH"] == "/usr/bin"
    # the package first, once, then what was there
    assert env["PYTHONPATH"].split(":") == [gloo.PACKAGE_PARENT, "/elsewhere"]
    assert "RANK" not in base  # the caller's mapping is left alone


def test_worker_env_keeps_a_users_thread_count():
    env = gloo.worker_env(0, 1, "10.0.0.2", 1, "h1-eth0", base={"OMP_NUM_THREADS": "4"})
    assert env["OMP_NUM_THREADS"] == "4"


@pytest.mark.parametrize("rank,world,ifname", [(4, 4, "h-eth0"), (-1, 4, "h-eth0"), (0, 2, "")])
def test_worker_env_rejects_bad_ranks_and_missing_interfaces(rank, world, ifname):
    with pytest.raises(InputError):
        gloo.worker_env(rank, world, "10.0.0.2", 1, ifname, base={})


def test_every_operation_has_a_gloo_call():
    assert set(gloo_worker.CALLS) == set(ops.OPS)


def test_default_timeout_grows_with_sizes_and_iterations():
    small = gloo.default_timeout_s([4096], 5, 1)
    assert small >= 120
    assert gloo.default_timeout_s([4096, 16 << 20], 5, 1) > small
    assert gloo.default_timeout_s([4096], 50, 1) > small


# ------------------------------------------------------------------ unsupported calls

@pytest.mark.parametrize("exc,unsupported", [
    (RuntimeError("ProcessGroupGloo does not support reduce_scatter"), True),
    (RuntimeError("Operation not supported by backend gloo"), True),
    (NotImplementedError(), True),
    (RuntimeError("Connection reset by peer"), False),
    (RuntimeError("Timed out waiting 300000ms for recv operation"), False),
    (KeyError("not supported"), False),
])
def test_unsupported_is_told_apart_from_failure(exc, unsupported):
    assert gloo_worker.is_unsupported(exc) is unsupported


# ------------------------------------------------------------------ parsing

def test_parse_worker_output():
    text = "\n".join([_hello(), _size("allreduce", SIZES[0]), "", _size("allreduce", SIZES[1])])
    parsed = gloo.parse_worker_output(text, "allreduce", SIZES, 4)
    assert parsed["torch"] == "2.13.0+cpu"
    assert [r["size_bytes"] for r in parsed["records"]] == SIZES


def test_parse_accepts_unsupported_records():
    text = "\n".join([_hello(), _size("reduce_scatter", 4096, unsupported="no such call")])
    parsed = gloo.parse_worker_output(text, "reduce_scatter", [4096], 4)
    assert parsed["records"][0]["unsupported"] == "no such call"


@pytest.mark.parametrize("lines,match", [
    ([_size("allreduce", 4096)], "no hello"),
    ([_hello(8), _size("allreduce", 4096)], "world size"),
    ([_hello(), "Traceback (most recent call last):"], "not JSON"),
    ([_hello(), json.dumps({"kind": "other"})], "unknown kind"),
    ([_hello()], "sizes"),
    ([_hello(), _size("allreduce", 8192)], "sizes"),
    ([_hello(), json.dumps({"kind": "size", "size_bytes": 4096, "count": 7, "times_s": [1],
                            "wrong": 0})], "count"),
    ([_hello(), _size("allreduce", 4096, times_s=[], wrong=0)], "times_s"),
    ([_hello(), _size("allreduce", 4096, times_s=[-1.0], wrong=0)], "times_s"),
    ([_hello(), _size("allreduce", 4096, times_s=[1.0], wrong=None)], "wrong"),
])
def test_parse_rejects_incomplete_or_wrong_output(lines, match):
    with pytest.raises(ToolError, match=match):
        gloo.parse_worker_output("\n".join(lines), "allreduce", [4096], 4)


# ------------------------------------------------------------------ rows

def test_gloo_row_has_the_engine_rows_shape_and_values():
    record = json.loads(_size("allreduce", 4 << 20))
    row = gloo.gloo_row("allreduce", 4, record, 1, "2.13.0+cpu", model_time_us=10000.0)
    assert set(row_dict("allreduce", "ring", 4, 1, 1.0, 0)) <= set(row)
    assert {"times_us", "gpus_per_host", "order", "nsocks", "buffsize_bytes", "engine"} <= set(row)
    assert (row["algorithm"], row["engine"], row["engine_version"]) == ("gloo", "gloo", "2.13.0+cpu")
    assert row["time_us"] == pytest.approx(20000.0)
    assert row["times_us"] == [10000.0, 30000.0]
    assert row["bytes"] == 4 << 20 and row["correct"] is True and row["root"] == -1
    assert row["meas_over_model"] == pytest.approx(2.0)
    # algbw = S / t: 4 MiB in 20 ms
    assert row["algbw_gbps"] == pytest.approx((4 << 20) / 20000.0 / 1e3)
    json.dumps(row)


def test_gloo_row_counts_wrong_elements_and_roots():
    record = json.loads(_size("broadcast", 4096, call="broadcast", times_s=[0.001], wrong=3))
    row = gloo.gloo_row("broadcast", 4, record, 2)
    assert (row["wrong"], row["correct"], row["root"], row["gpus_per_host"]) == (3, False, 0, 2)


def test_unsupported_row_has_no_time_and_says_why():
    record = json.loads(_size("reduce_scatter", 4096, unsupported="reduce_scatter: not supported"))
    row = gloo.gloo_row("reduce_scatter", 4, record, 1)
    assert row["time_us"] is None and row["wrong"] is None and row["correct"] is None
    assert row["unsupported"] == "reduce_scatter: not supported"
    assert row["times_us"] == []


def test_require_torch_names_the_extra(monkeypatch):
    monkeypatch.setattr(gloo.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EnvironmentProblem, match=r"\[gloo\]"):
        gloo.require_torch()


# ------------------------------------------------------------------ worker processes

def _sleeper(code_after_s=None, code=0):
    script = ("import sys, time; time.sleep(30)" if code_after_s is None else
              f"import sys, time; time.sleep({code_after_s}); sys.stderr.write('boom\\n'); "
              f"sys.exit({code})")
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def test_a_failing_worker_fails_the_wait_and_reaping_kills_the_rest(tmp_path):
    err = tmp_path / "rank1.err"
    err.write_text("Traceback ...\nRuntimeError: Connection closed by peer\n")
    procs = [_sleeper(), _sleeper(0.1, code=3)]
    try:
        started = time.monotonic()
        with pytest.raises(RunError, match=r"rank 1 on h2 exited 3: .*Connection closed by peer"):
            gloo.wait_workers(procs, ["rank 0 on h1", "rank 1 on h2"],
                              [tmp_path / "none", err], timeout_s=20)
        assert time.monotonic() - started < 10  # did not wait for the sleeper
    finally:
        stuck = gloo.reap_workers(procs)
    assert stuck == []
    assert procs[0].returncode is not None and procs[0].returncode < 0  # killed by us


def test_a_hanging_worker_hits_the_deadline(tmp_path):
    procs = [_sleeper()]
    try:
        with pytest.raises(RunError, match="did not finish within 0.3 s: rank 0 on h1"):
            gloo.wait_workers(procs, ["rank 0 on h1"], [tmp_path / "e"], timeout_s=0.3)
    finally:
        assert gloo.reap_workers(procs) == []
    assert procs[0].poll() is not None


def test_workers_that_all_succeed_pass(tmp_path):
    procs = [_sleeper(0.0, code=0), _sleeper(0.05, code=0)]
    try:
        gloo.wait_workers(procs, ["a", "b"], [tmp_path / "a", tmp_path / "b"], timeout_s=20)
    finally:
        gloo.reap_workers(procs)
    assert [p.returncode for p in procs] == [0, 0]


def test_public_surface():
    for module in (gloo, gloo_worker):
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)
