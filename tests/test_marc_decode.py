"""api.catalog.marc_import.decode_utf8: the lean ISO 2709 decoder against pymarc.

Every record is read twice: by `_item` (the lean decoder first) and by `_item_checked` (the detailed
checks and pymarc, which the lean decoder hands the unusual records to). The two must give the same
item: the same BibRecord, warnings and raw bytes, or the same rejection. The records are the 233 real
JAPAN/MARC records, records built to be unusual in one way each, and seeded random corruptions of
the real ones.
"""

from __future__ import annotations

import random
from functools import cache
from pathlib import Path

import pytest
from pymarc import MARCReader

from api.catalog.bib import Imported, Rejected
from api.catalog.marc_import import _item, _item_checked, _map, decode_utf8, load_profile

pytestmark = pytest.mark.filterwarnings("ignore::pymarc.exceptions.BadSubfieldCodeWarning")  # pymarc's own

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")
MARC = DATA / "ndl_japan_marc21_sample.mrc"


@cache
def records() -> list[bytes]:
    return [chunk + b"\x1d" for chunk in MARC.read_bytes().split(b"\x1d")[:-1]]


def assemble(fields: list[tuple[str, bytes]], *, order: list[int] | None = None, coding: bytes = b"a") -> bytes:
    """An ISO 2709 record from (tag, field body without terminator); `order` lays the data out in
    another order than the directory's."""
    bodies = [body + b"\x1e" for _, body in fields]
    layout = order or list(range(len(fields)))
    starts, at = {}, 0
    for i in layout:
        starts[i] = at
        at += len(bodies[i])
    directory = b"".join(tag.encode() + b"%04d%05d" % (len(bodies[i]), starts[i]) for i, (tag, _) in enumerate(fields))
    base = 24 + len(directory) + 1
    data = b"".join(bodies[i] for i in layout)
    length = base + len(data) + 1
    leader = b"%05dnam " % length + coding + b"22%05dzi 4500" % base
    return leader + directory + b"\x1e" + data + b"\x1d"


def fields_of(chunk: bytes) -> list[tuple[str, bytes]]:
    base = int(chunk[12:17])
    directory = chunk[24:base - 1]
    out = []
    for i in range(0, len(directory), 12):
        length, start = int(directory[i + 3:i + 7]), int(directory[i + 7:i + 12])
        out.append((directory[i:i + 3].decode(), chunk[base + start:base + start + length - 1]))
    return out


def same_item(profile_name: str, chunk: bytes, complete: bool | str = True) -> Imported | Rejected:
    profile = load_profile(profile_name)
    fast = _item(profile, 7, 1234, chunk, complete)
    checked = _item_checked(profile, 7, 1234, chunk, complete)
    assert fast == checked
    return fast


# (the UNIMARC profile finds no title in MARC 21 records: all rejected, the same way on both paths)
@pytest.mark.parametrize(("profile", "imported"), [("ndl-marc21", 233), ("marc21", 233), ("jpmarc-unimarc", 0)])
def test_real_records_decode_like_pymarc(profile: str, imported: int) -> None:
    items = []
    for chunk in records():
        assert decode_utf8(chunk) is not None  # every real record takes the lean path
        items.append(same_item(profile, chunk))
    assert sum(isinstance(item, Imported) for item in items) == imported


def assert_fields_as_pymarc(chunk: bytes) -> None:
    lean = decode_utf8(chunk)
    assert lean is not None
    record = next(MARCReader(chunk, to_unicode=True, force_utf8=True))
    assert lean.leader == str(record.leader)
    assert [(f.tag, f.control_field, f.data, f.indicators and tuple(f.indicators), f.subfields)
            for f in lean.fields] == \
           [(f.tag, f.control_field, f.data, None if f.control_field else tuple(f.indicators),
             [tuple(s) for s in f.subfields]) for f in record.fields]


def test_fields_match_pymarc_field_by_field() -> None:
    for chunk in records():
        assert_fields_as_pymarc(chunk)


TITLE = "10\x1fa図書館戦争 /\x1fc有川浩".encode()
BASE = [("001", b"000000000001"), ("003", b"JTNDL"), ("008", b"200101s2020    ja            000 0 jpn  "),
        ("020", b"  \x1fa9784041000000"), ("245", TITLE), ("260", b"  \x1faTokyo :\x1fbKadokawa,\x1fc2020.")]


@pytest.mark.parametrize(("name", "fields", "lean_reads_it"), [
    ("ordinary", BASE, True),
    ("no indicators", [*BASE[:5], ("260", b"\x1faTokyo")], True),
    ("one indicator", [*BASE[:5], ("260", b"1\x1faTokyo")], True),
    ("three indicators", [*BASE[:5], ("260", b"123\x1faTokyo")], True),
    ("empty subfields", [*BASE[:5], ("260", b"  \x1f\x1faTokyo\x1f")], True),
    ("a subfield code only", [*BASE[:5], ("260", b"  \x1fa\x1fbKadokawa")], True),
    ("an alphabetic control-range tag", [*BASE, ("00A", b"  \x1faX")], True),
    ("a non-ASCII subfield code", [*BASE[:5], ("260", "  \x1féTokyo".encode())], False),
    ("a non-ASCII indicator", [*BASE[:5], ("260", "é \x1faTokyo".encode())], False),
    ("a field terminator inside a field", [*BASE[:5], ("260", b"  \x1faTo\x1ekyo")], False),
    ("invalid UTF-8 in a subfield", [*BASE[:5], ("260", b"  \x1faTo\xe3kyo")], False),
])
def test_unusual_records_read_as_pymarc_reads_them(name: str, fields: list[tuple[str, bytes]],
                                                   lean_reads_it: bool) -> None:
    chunk = assemble(fields)
    assert (decode_utf8(chunk) is not None) is lean_reads_it, name
    if lean_reads_it:
        assert_fields_as_pymarc(chunk)
    same_item("ndl-marc21", chunk)


def test_data_laid_out_out_of_directory_order_goes_to_pymarc() -> None:
    chunk = assemble(BASE, order=[5, 4, 3, 2, 1, 0])
    assert decode_utf8(chunk) is None
    item = same_item("ndl-marc21", chunk)
    assert isinstance(item, Imported) and item.record.title == "図書館戦争"


def test_marc8_and_other_codings_keep_their_rejections() -> None:
    for coding in (b" ", b"z"):
        item = same_item("ndl-marc21", assemble(BASE, coding=coding))
        assert isinstance(item, Rejected)
    # a profile that reads UTF-8 whatever the leader says takes the lean path
    assert isinstance(same_item("jpmarc-unimarc", assemble(BASE, coding=b" ")), Imported | Rejected)


def test_structural_damage_is_reported_as_before() -> None:
    chunk = records()[0]
    n = len(chunk)
    damaged = [
        chunk[:5].replace(chunk[:5], b"%05d" % (n + 1)) + chunk[5:],           # record length
        chunk[:12] + b"0002a" + chunk[17:],                                   # base address not digits
        chunk[:24 + 3] + b"0A12" + chunk[24 + 7:],                            # a directory length
        chunk[:24 + 3] + b" 012" + chunk[24 + 7:],                            # spaces int() would accept
        chunk[:-1],                                                           # no record terminator
        chunk[:30],
    ]
    for broken in damaged:
        assert decode_utf8(broken) is None
        assert isinstance(same_item("ndl-marc21", broken), Rejected)
    assert isinstance(same_item("ndl-marc21", chunk[:-1], complete=False), Rejected)


def test_field_lengths_that_do_not_match_the_terminators() -> None:
    fields = fields_of(records()[0])
    chunk = bytearray(assemble(fields))
    # move one byte from field 3's length to field 4's: the offsets still add up
    base = int(chunk[12:17])
    e3, e4 = 24 + 3 * 12, 24 + 4 * 12
    l3, l4 = int(chunk[e3 + 3:e3 + 7]), int(chunk[e4 + 3:e4 + 7])
    s4 = int(chunk[e4 + 7:e4 + 12])
    chunk[e3 + 3:e3 + 7] = b"%04d" % (l3 + 1)
    chunk[e4 + 3:e4 + 7] = b"%04d" % (l4 - 1)
    chunk[e4 + 7:e4 + 12] = b"%05d" % (s4 + 1)
    assert base == int(chunk[12:17])
    assert decode_utf8(bytes(chunk)) is None
    assert isinstance(same_item("ndl-marc21", bytes(chunk)), Rejected)


def test_random_corruptions_give_the_same_items() -> None:
    rng = random.Random(20261121)
    replacements = [b"\x1f", b"\x1e", b"\x1d", b" ", b"a", b"0", b"\x80", b"\xe3", b"\xff", b"|"]
    taken = rejected = 0
    for _ in range(3000):
        chunk = bytearray(rng.choice(records()))
        for _ in range(rng.choice((1, 1, 2))):
            at = rng.randrange(len(chunk) - 1)
            chunk[at:at + 1] = rng.choice(replacements)
        item = same_item(rng.choice(["ndl-marc21", "jpmarc-unimarc"]), bytes(chunk))
        taken += decode_utf8(bytes(chunk)) is not None
        rejected += isinstance(item, Rejected)
    assert taken > 500 and rejected > 500  # both paths were exercised


def test_a_profiles_unread_fields_are_left_undecoded_and_the_record_maps_the_same() -> None:
    profile = load_profile("ndl-marc21")
    for chunk in records():
        full, lean = decode_utf8(chunk), decode_utf8(chunk, profile.read_tags)
        assert full is not None and lean is not None
        assert {f.tag for f in lean.fields} < {f.tag for f in full.fields}  # 005, 040, 090 … are left out
        assert lean.by_tag == {tag: fs for tag, fs in lean.by_tag.items() if tag.encode() in profile.read_tags}
        assert _map(profile, lean, chunk, "marc21") == _map(profile, full, chunk, "marc21")
    # a non-ASCII indicator in a field the profile does not read still sends the record to pymarc
    chunk = assemble([*BASE, ("040", "é \x1faJTNDL".encode())])
    assert decode_utf8(chunk) is None and decode_utf8(chunk, profile.read_tags) is None
    same_item("ndl-marc21", chunk)


def test_a_record_without_fields_goes_to_pymarc() -> None:
    assert decode_utf8(assemble([])) is None
