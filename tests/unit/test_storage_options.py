"""Storage step options, role choice, argv and the CLIs' argument checks (no lab, no sockets)."""

import sys

import pytest

from testbed.errors import InputError
from testbed.lab.node import Node
from testbed.storage import admin, cache, commands, reader, server
from testbed.storage.options import MAX_DATASET_BYTES, StorageOptions, load_options
from testbed.storage.roles import choose_roles
from testbed.storage.step import updated_names


def test_defaults():
    o = load_options(None)
    assert o == StorageOptions()
    assert o.cache is True and o.corrupt_pct == 0.0
    assert o.cache_capacity_bytes == 64 * 1024**2 and o.shard_size_bytes == 256 * 1024
    assert o.dataset_bytes == o.shards * o.shard_size_bytes


def test_sizes_and_percentages_take_units():
    o = load_options({"cache_capacity_bytes": "64M", "shard_size_bytes": "1MiB", "corrupt_pct": "0.5%"})
    assert o.cache_capacity_bytes == 64 * 1024**2
    assert o.shard_size_bytes == 1024**2
    assert o.corrupt_pct == 0.5
    assert load_options({"shard_size_bytes": 4096}).shard_size_bytes == 4096
    dumped = o.model_dump(mode="json")
    assert dumped["cache_capacity_bytes"] == 64 * 1024**2  # results record whole bytes
    assert load_options(dumped) == o


@pytest.mark.parametrize("data, field", [
    ({"shards": 0}, "measure.storage.shards"),
    ({"shardz": 4}, "measure.storage.shardz"),
    ({"cache_capacity_bytes": "64Q"}, "measure.storage.cache_capacity_bytes"),
    ({"shard_size_bytes": 1.5}, "measure.storage.shard_size_bytes"),
    ({"shard_size_bytes": True}, "measure.storage.shard_size_bytes"),
    ({"corrupt_pct": "150%"}, "measure.storage.corrupt_pct"),
    ({"cache": "yes"}, "measure.storage.cache"),
    ({"epochs": "2"}, "measure.storage.epochs"),
    ({"readers": ["H1"]}, "measure.storage.readers.0"),
    ({"readers": []}, "measure.storage.readers"),
    ({"origin_site": "a b"}, "measure.storage.origin_site"),
    ({"timeout_s": 0}, "measure.storage.timeout_s"),
    ({"origin_port": 80}, "measure.storage.origin_port"),
    ({"origin_site": "cw", "origin_host": "cw-h1"}, "measure.storage"),
    ({"reader_site": "gcp", "readers": ["gcp-h1"]}, "measure.storage"),
    ({"readers": ["h2", "h2"]}, "measure.storage"),
    ({"cache": False, "cache_host": "h2"}, "measure.storage"),
    ({"shards": 100_000, "shard_size_bytes": "1M"}, "measure.storage"),
    ({"shards": 4, "updates_per_epoch": 5}, "measure.storage"),
    ({"origin_port": 9000, "cache_port": 9000}, "measure.storage"),
])
def test_bad_options_name_the_field(data, field):
    with pytest.raises(InputError) as info:
        load_options(data)
    assert info.value.field == field
    assert "\n" not in str(info.value)


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(InputError, match="did you mean 'shards'"):
        load_options({"shardz": 4})


def test_options_are_not_a_mapping():
    with pytest.raises(InputError):
        load_options(["shards"])


def test_dataset_limit_is_the_origin_memory_bound():
    load_options({"shards": 8, "shard_size_bytes": MAX_DATASET_BYTES // 8})


# -- roles --------------------------------------------------------------------

def _hosts(*specs):
    return [Node(name=n, netns=f"tb.x.{n}", ip=f"10.9.0.{i + 1}", site=s)
            for i, (n, s) in enumerate(specs)]


TWO_CLOUDS = _hosts(("cw-h1", "cw"), ("cw-h2", "cw"), ("gcp-h1", "gcp"), ("gcp-h2", "gcp"))
PAIR = _hosts(("h1", "a"), ("h2", "b"))


def _roles(hosts, **options):
    return choose_roles(hosts, load_options(options))


def test_pair_defaults_origin_h1_reader_and_cache_on_h2():
    roles = _roles(PAIR)
    assert roles.origin.name == "h1"
    assert [r.name for r in roles.readers] == ["h2"]
    assert {s: c.name for s, c in roles.caches.items()} == {"b": "h2"}  # beside the only reader


def test_two_clouds_cache_goes_on_a_spare_host_of_the_readers_site():
    roles = _roles(TWO_CLOUDS, origin_site="cw", readers=["gcp-h2"])
    assert roles.origin.name == "cw-h1"
    assert roles.caches["gcp"].name == "gcp-h1"
    assert roles.cache_for(roles.readers[0]).name == "gcp-h1"
    doc = roles.to_dict()
    assert doc["origin"] == {"host": "cw-h1", "site": "cw"}
    assert doc["caches"] == [{"host": "gcp-h1", "site": "gcp"}]


def test_reader_site_takes_every_host_but_the_origin():
    roles = _roles(TWO_CLOUDS, origin_site="cw", reader_site="gcp", cache=False)
    assert [r.name for r in roles.readers] == ["gcp-h1", "gcp-h2"]
    assert roles.caches == {}
    same_site = _roles(TWO_CLOUDS, origin_host="cw-h2", reader_site="cw", cache=False)
    assert [r.name for r in same_site.readers] == ["cw-h1"]


def test_readers_in_two_sites_get_a_cache_each():
    roles = _roles(TWO_CLOUDS, origin_host="cw-h1", readers=["cw-h2", "gcp-h2"])
    assert {s: c.name for s, c in roles.caches.items()} == {"cw": "cw-h2", "gcp": "gcp-h1"}


@pytest.mark.parametrize("options, field", [
    ({"origin_host": "nope"}, "measure.storage.origin_host"),
    ({"origin_site": "aws"}, "measure.storage.origin_site"),
    ({"reader_site": "aws"}, "measure.storage.reader_site"),
    ({"readers": ["h1"]}, "measure.storage.readers"),  # the origin
    ({"readers": ["h3"]}, "measure.storage.readers"),
    ({"cache_host": "h1"}, "measure.storage.cache_host"),  # the origin
    ({"origin_site": "a", "reader_site": "a"}, "measure.storage.reader_site"),
])
def test_impossible_roles_on_pair(options, field):
    with pytest.raises(InputError) as info:
        _roles(PAIR, **options)
    assert info.value.field == field


def test_a_cache_must_be_in_its_readers_site():
    with pytest.raises(InputError, match="a cache serves its own site"):
        _roles(TWO_CLOUDS, origin_site="cw", readers=["gcp-h2"], cache_host="cw-h2")


def test_one_site_labs_need_explicit_readers():
    hosts = _hosts(("h1", "s"), ("h2", "s"))
    with pytest.raises(InputError):
        _roles(hosts)
    assert [r.name for r in _roles(hosts, readers=["h2"]).readers] == ["h2"]
    with pytest.raises(InputError):
        _roles(hosts[:1])


# -- argv, updates, deadlines ---------------------------------------------------

def test_argv_lists_carry_the_options():
    o = load_options({"shards": 4, "shard_size_bytes": 1024, "corrupt_pct": 2, "seed": 9})
    argv = commands.origin_argv("10.0.0.1", o)
    assert argv[:3] == [sys.executable, "-m", "testbed.storage.server"]
    assert server.build_parser().parse_args(argv[3:]).corrupt_pct == 2.0
    url = commands.base_url("10.0.0.1", o.origin_port)
    assert url == "http://10.0.0.1:8470"
    args = cache.build_parser().parse_args(commands.cache_argv("10.0.1.2", url, o)[3:])
    assert args.origin == url and args.capacity_bytes == o.cache_capacity_bytes
    args = reader.build_parser().parse_args(
        commands.reader_argv(url, "http://10.0.1.2:8471", 2, 1, 3, "gcp-h2", o)[3:])
    assert (args.epoch, args.reader_index, args.reader_count, args.seed) == (2, 1, 3, 9)
    assert args.cache == "http://10.0.1.2:8471" and args.label == "gcp-h2"
    assert "--cache" not in commands.reader_argv(url, None, 1, 0, 1, "r", o)
    args = admin.build_parser().parse_intermixed_args(
        commands.admin_argv("publish", url, ["shard-00001", "shard-00002"])[3:])
    assert args.command == "publish" and args.names == ["shard-00001", "shard-00002"]


def test_updated_names_are_seeded_and_only_after_the_first_epoch():
    o = load_options({"shards": 10, "updates_per_epoch": 3, "seed": 4})
    assert updated_names(o, 1) == []
    two = updated_names(o, 2)
    assert len(two) == 3 and two == updated_names(o, 2) and two != updated_names(o, 3)
    assert updated_names(load_options({"shards": 10}), 2) == []


@pytest.mark.parametrize("main, argv", [
    (server.main, ["--port", "8470", "--shards", "0", "--shard-size-bytes", "1"]),
    (server.main, ["--port", "8470", "--shards", "1", "--shard-size-bytes", "1", "--corrupt-pct", "200"]),
    (cache.main, ["--port", "8471", "--origin", "ftp://x", "--capacity-bytes", "1"]),
    (cache.main, ["--port", "8471", "--origin", "http://10.0.0.1:8470", "--capacity-bytes", "-1"]),
    (reader.main, ["--origin", "http://10.0.0.1"]),
    (reader.main, ["--origin", "http://10.0.0.1:8470", "--parallel", "0"]),
    (reader.main, ["--origin", "http://10.0.0.1:8470", "--reader-index", "2", "--reader-count", "2"]),
    (admin.main, ["stats", "--url", "http://10.0.0.1:8470/path"]),
    (admin.main, ["publish", "--url", "http://10.0.0.1:8470"]),
    (admin.main, ["publish", "--url", "http://10.0.0.1:8470", "Bad/Name"]),
])
def test_clis_refuse_bad_arguments_before_any_socket(main, argv, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err.strip()
