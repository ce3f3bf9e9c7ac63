"""time_to_steady_s() on hand-made interval series."""

from pathlib import Path

import pytest

from testbed.errors import InputError
from testbed.measure.iperf import IperfTcpRunner
from testbed.measure.steady import time_to_steady_s

FIXTURES = Path(__file__).parent / "fixtures" / "measure"


def series(rates, step_s=1.0, start_s=0.0):
    return [
        {"start_s": start_s + i * step_s, "end_s": start_s + (i + 1) * step_s, "mbps": r}
        for i, r in enumerate(rates)
    ]


def test_ramp_then_steady():
    # last half: 102, 98, 101, 99 -> mean 100; 85 is 15 % off, 95 is 5 % off
    rates = [10, 50, 85, 95, 102, 98, 101, 99]
    assert time_to_steady_s(series(rates)) == pytest.approx(3.0)


def test_steady_from_the_start():
    assert time_to_steady_s(series([100, 104, 97, 100])) == 0.0


def test_dip_in_the_middle_moves_the_answer_past_it():
    rates = [100, 100, 50, 100, 100, 100]
    assert time_to_steady_s(series(rates, step_s=0.5)) == pytest.approx(1.5)


def test_last_interval_out_of_tolerance_gives_none():
    # last half = 100, 100, 150 -> mean 116.7; 150 is 28 % off
    assert time_to_steady_s(series([100, 100, 100, 100, 150])) is None


def test_wider_tolerance_settles_earlier():
    rates = [10, 50, 85, 95, 102, 98, 101, 99]
    assert time_to_steady_s(series(rates), tolerance=0.2) == pytest.approx(2.0)
    assert time_to_steady_s(series(rates), tolerance=0.6) == pytest.approx(1.0)


def test_answer_is_relative_to_the_first_interval():
    rates = [20, 100, 100, 100]
    assert time_to_steady_s(series(rates, start_s=2.0)) == pytest.approx(1.0)


def test_single_interval_is_steady_at_zero():
    assert time_to_steady_s(series([42.0])) == 0.0


def test_empty_and_silent_transfers_have_no_steady_time():
    assert time_to_steady_s([]) is None
    assert time_to_steady_s(series([0, 0, 0])) is None


@pytest.mark.parametrize("tolerance", [0, -0.1, float("nan"), "10%", True])
def test_bad_tolerance_is_rejected(tolerance):
    with pytest.raises(InputError):
        time_to_steady_s(series([1, 1]), tolerance=tolerance)


def test_malformed_interval_names_its_index():
    with pytest.raises(InputError) as info:
        time_to_steady_s([{"start_s": 0, "mbps": 1}, {"start_s": 1}])
    assert info.value.field == "intervals[1]"


def test_negative_rate_is_rejected():
    with pytest.raises(InputError):
        time_to_steady_s(series([1, -1]))


def test_real_iperf3_intervals():
    # fixture rates (Mbit/s): 8283.1, 8646.1, 7468.4, 8288.0; final level = mean of
    # the last two = 7878.2. Within 10 % (787.8) all are; within 5 % (393.9) the
    # last one (409.8 off) is not.
    text = (FIXTURES / "iperf3_tcp_single.json").read_text()
    intervals = IperfTcpRunner().parse(text)["intervals"]
    assert [round(i["mbps"], 1) for i in intervals] == [8283.1, 8646.1, 7468.4, 8288.0]
    assert time_to_steady_s(intervals, tolerance=0.10) == 0.0
    assert time_to_steady_s(intervals, tolerance=0.05) is None
