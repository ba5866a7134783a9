"""dfer.core.sharding against values pinned by hand.

``shard_of`` is ``int.from_bytes(blake2b(clip_id, digest_size=8), "big") % num_shards``; the
digests below were computed once with hashlib and written down, so a change of the hash, its
size, the byte order or the encoding changes every shard a clip has been stored in, and fails
here rather than silently re-sharding a dataset.
"""

from __future__ import annotations

import hashlib

import pytest

from dfer.core.sharding import (
    MIN_DIGITS,
    shard_file_regex,
    shard_name,
    shard_names,
    shard_of,
    shard_width,
    shards_in,
)

# clip id -> (blake2b-64 digest, big-endian integer)
DIGESTS = {
    "clip_0001": ("dda78233a2279b83", 15971877761768201091),
    "00025": ("741566ec9cef0a6f", 8364705049341790831),
    "sourire_é": ("9fadfa148ec3c0fd", 11506127589202968829),  # UTF-8 bytes, not Latin-1
    "War_Fear_0007": ("1ca955a30a91beda", 2065276062871437018),
    "": ("e4a6a0577479b2b4", 16476032584258269876),
}

# (clip id, num_shards) -> shard: the integer above modulo num_shards
PINNED = [
    ("clip_0001", 1, 0), ("clip_0001", 2, 1), ("clip_0001", 7, 0), ("clip_0001", 8, 3),
    ("clip_0001", 16, 3), ("clip_0001", 1000, 91), ("clip_0001", 1200, 291),
    ("00025", 2, 1), ("00025", 7, 3), ("00025", 8, 7), ("00025", 16, 15), ("00025", 1000, 831),
    ("00025", 1200, 31),
    ("sourire_é", 7, 2), ("sourire_é", 8, 5), ("sourire_é", 16, 13), ("sourire_é", 1000, 829),
    ("War_Fear_0007", 2, 0), ("War_Fear_0007", 7, 1), ("War_Fear_0007", 8, 2),
    ("War_Fear_0007", 16, 10), ("War_Fear_0007", 1000, 18), ("War_Fear_0007", 1200, 618),
    ("", 7, 0), ("", 8, 4), ("", 16, 4), ("", 1000, 876),
]


def test_pinned_digests_are_blake2b_64_big_endian() -> None:
    for clip_id, (hexdigest, value) in DIGESTS.items():
        digest = hashlib.blake2b(clip_id.encode("utf-8"), digest_size=8).digest()
        assert digest.hex() == hexdigest
        assert int(hexdigest, 16) == value


@pytest.mark.parametrize("clip_id, num_shards, shard", PINNED)
def test_shard_of_pinned_values(clip_id: str, num_shards: int, shard: int) -> None:
    assert shard_of(clip_id, num_shards) == shard
    assert DIGESTS[clip_id][1] % num_shards == shard


def test_shard_of_rejects_fewer_than_one_shard() -> None:
    assert shard_of("x", 1) == 0
    for bad in (0, -3):
        with pytest.raises(ValueError) as exc:
            shard_of("x", bad)
        assert str(exc.value) == f"num_shards must be >= 1, got {bad}"


def test_shard_width_is_digits_of_the_largest_index_at_least_three() -> None:
    assert MIN_DIGITS == 3
    expected = {1: 3, 2: 3, 999: 3, 1000: 3, 1001: 4, 1200: 4, 10000: 4, 10001: 5}
    assert {n: shard_width(n) for n in expected} == expected
    for bad in (0, -1):
        with pytest.raises(ValueError) as exc:
            shard_width(bad)
        assert str(exc.value) == f"num_shards must be >= 1, got {bad}"


def test_shard_name_pads_to_the_dataset_width() -> None:
    assert shard_name(7) == "007"
    assert shard_name(0) == "000"
    assert shard_name(999) == "999"
    assert shard_name(7, 8) == "007"
    assert shard_name(7, 1000) == "007"
    assert shard_name(7, 1001) == "0007"
    assert shard_name(1199, 1200) == "1199"
    assert shard_name(0, 1) == "000"


def test_shard_name_out_of_range_messages() -> None:
    cases = [
        ((-1, None), "shard index -1 out of range for None shards"),
        ((-1, 4), "shard index -1 out of range for 4 shards"),
        ((4, 4), "shard index 4 out of range for 4 shards"),
        ((5, 4), "shard index 5 out of range for 4 shards"),
        ((1000, None), "shard index 1000: pass num_shards to name it"),
        ((1234, None), "shard index 1234: pass num_shards to name it"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError) as exc:
            shard_name(*args)
        assert str(exc.value) == message
    assert shard_name(3, 4) == "003"  # the last valid index


def test_shard_names_share_one_width_and_sort_in_shard_order() -> None:
    assert shard_names(1) == ["000"]
    assert shard_names(3) == ["000", "001", "002"]
    names = shard_names(1001)
    assert len(names) == 1001 and names[0] == "0000" and names[-1] == "1000"
    assert {len(n) for n in names} == {4}
    assert sorted(names) == names
    assert shard_names(0) == []


def test_shard_file_regex_matches_digits_only() -> None:
    rx = shard_file_regex(".parquet")
    assert rx.match("shard-007.parquet").group(1) == "007"
    assert rx.match("shard-1199.parquet").group(1) == "1199"
    for name in ("shard-07.parquet", "shard-007.failures.parquet", "shard-007.parquetx",
                 "xshard-007.parquet", "shard-007xparquet", "shard-abc.parquet"):
        assert rx.match(name) is None, name
    assert shard_file_regex(".json").match("shard-012.json").group(1) == "012"
    assert shard_file_regex(".json").match("shard-012.parquet") is None


def test_shards_in_lists_shard_files_in_shard_order(tmp_path) -> None:
    for name in ("shard-002.parquet", "shard-010.parquet", "shard-001.parquet",
                 "shard-001.failures.parquet", "shard-003.json", "notes.txt"):
        (tmp_path / name).write_text("x")
    assert shards_in(tmp_path) == ["001", "002", "010"]
    assert shards_in(str(tmp_path), ".parquet") == ["001", "002", "010"]
    assert shards_in(tmp_path, ".json") == ["003"]
    assert shards_in(tmp_path, ".failures.parquet") == ["001"]
    assert shards_in(tmp_path / "missing") == []
    (tmp_path / "file").write_text("x")
    assert shards_in(tmp_path / "file") == []


def test_shards_in_orders_by_number_across_widths(tmp_path) -> None:
    # a folder left from a re-sharding can hold names of two widths: order by index
    for name in ("shard-1000.parquet", "shard-999.parquet", "shard-0999.parquet"):
        (tmp_path / name).write_text("x")
    assert shards_in(tmp_path) == ["0999", "999", "1000"]
