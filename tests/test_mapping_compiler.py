"""api.catalog.mapping_compiler: a profile compiled to Python maps every record exactly as the interpreter does.

The interpreter (`marc_import._interpreted`, walking the profile's plan) is the reference. Both are run on the
233 real NDL records under every MARC 21 profile, on the JAPAN/MARC UNIMARC fixture, and on a few thousand
random records built against a profile that uses every key of the mapping language (indicator conditions on
control fields, when/unless, per, links that are missing, split values paired up, alternatives, constants), as
`MarcRecord`s from `decode_utf8` and as pymarc `Record`s. Records, warnings and readings must be identical.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pymarc import Field, Indicators, Record, Subfield

from api.catalog import marc_import
from api.catalog.bib import BibRecord
from api.catalog.marc_import import MappingError, MarcRecord, Profile, _map, decode_utf8, load_profile
from tests.test_marc_import import jpmarc_records, raw_records

COVERAGE = """
profile: coverage
description: every key of the mapping language, for tests/test_mapping_compiler.py
format: marc21
encoding: utf-8
fields:
  source: [{tag: '003'}, {tag: '040', subfields: a, when: {b: '^jpn$'}}, {const: LOCAL}]
  control_number: {tag: '001', trim: space}
  title: [{tag: '245', subfields: ab, join: ' : '}, {tag: '246', subfields: a}]
  title_reading: {tag: '245', subfields: a, linked: $1}
  title_transcription: [{tag: '245', subfields: ab, linked: (B}, {tag: '008', positions: [0, 2]}]
  subtitle: {tag: '245', subfields: b, first: true}
  part: {tag: '245', subfields: np, trim: space}
  responsibility: {tag: '245', subfields: c, unless: {c: '^x'}}
  edition: [{tag: ['250', '008'], ind1: '1', subfields: a}, {tag: '250'}]
  publisher: [{tag: '264', ind2: '1', subfields: b, first: true}, {tag: '260', subfields: b}]
  publisher_reading: [{tag: '264', ind2: '1', subfields: b, linked: $1}, {tag: '260', subfields: b, linked: $1}]
  place: {tag: ['260', '264'], subfields: a, when: {a: '.', b: '.'}}
  year: [{tag: '260', subfields: c, extract: '(\\d{4})'}, {tag: '008', positions: [7, 11], extract: '^(\\d{4})$'}]
  extent: {tag: '300', subfields: abce, trim: end}
  price: {tag: '020', subfields: c, default: none}
  language: [{tag: '041', subfields: a, map: {jpn: JPN, eng: ENG}}, {tag: '008', positions: [35, 38]}]
  audience: {tag: '008', positions: [22, 23], map: {j: juvenile}}
  material_type: [{tag: LDR, positions: [6, 7], map: {a: book, m: etext}}, {tag: '245', indicator: 2}]
  isbns: [{tag: '020', subfields: a}, {tag: '020', subfields: z, linked: $1}]
  notes: [{tag: '500'}, {tag: ['504', '008'], subfields: a, each: true, split: ' / '}, {const: noted}]
  links: {tag: '856', subfields: u, ind1: '4'}
  parallel_titles: [{tag: '246', ind2: '1', subfields: ab}, {tag: '246', subfields: a, linked: $1, each: true}]
  authors:
    - tag: ['100', '700']
      item:
        name: [{subfields: a, linked: $1}, {subfields: abc}]
        reading: {subfields: abc, linked: $1}
        dates: {subfields: d}
        role: {subfields: e4, join: ', '}
        authority_id: {subfields: '0', first: true}
    - tag: ['110', '710']
      ind2: ' 2'
      item:
        name: {subfields: ab}
        role: {subfields: e, each: true}
  series:
    - tag: '490'
      per: a
      item:
        title: {subfields: a}
        reading: {subfields: a, linked: $1}
        volume: {subfields: v}
    - tag: '830'
      item:
        title: {subfields: a}
        volume: [{subfields: v}, {const: '1'}]
  subjects:
    - tag: ['650', '651']
      ind2: '7'
      when: {'2': '^ndlsh$'}
      item:
        term: {subfields: axyz, join: '--'}
        reading: {subfields: axyz, join: '--', linked: $1}
        scheme: {const: ndlsh}
    - tag: '650'
      unless: {'2': '^ndlsh$'}
      item:
        term: {subfields: a}
        scheme: {subfields: '2', default: other}
    - tag: '653'
      item:
        term: {subfields: a, each: true, split: ' / '}
        reading: {subfields: a, each: true, split: ' / ', linked: $1}
        scheme: {const: keyword}
    - tag: '008'
      item:
        term: {positions: [0, 3]}
  classifications:
    - tag: '084'
      when: {'2': '^njb/'}
      item:
        number: {subfields: a, first: true}
        scheme: {const: ndc}
        edition: {subfields: '2', extract: 'njb/0*(\\d+)'}
    - tag: '082'
      item:
        number: {subfields: a, each: true}
        scheme: {const: ddc}
  other_titles:
    - tag: '740'
      item:
        title: {subfields: a}
        kind: {const: 'contents / more', split: ' / '}
"""


def mapped(profile: Profile, record: Record | MarcRecord, interpret: bool) -> BibRecord | str:
    try:
        return _map(profile, record, None, profile.format, interpret=interpret)
    except MappingError as e:
        return f"MappingError: {e}"


def assert_same(profile: Profile, record: Record | MarcRecord) -> BibRecord | str:
    compiled, interpreted = mapped(profile, record, False), mapped(profile, record, True)
    if isinstance(interpreted, str) or isinstance(compiled, str):
        assert compiled == interpreted
        return compiled
    assert compiled.to_json() == interpreted.to_json()
    assert compiled.warnings == interpreted.warnings
    return compiled


@pytest.mark.parametrize("name", ["ndl-marc21", "marc21"])
def test_real_records_map_the_same(name: str) -> None:
    profile = load_profile(name)
    records = [decode_utf8(raw) for raw in raw_records()]
    assert all(r is not None for r in records)
    titled = [assert_same(profile, r) for r in records if r is not None]
    assert sum(isinstance(r, BibRecord) and bool(r.title) for r in titled) == 233
    if name == "ndl-marc21":  # the paths that matter here were taken: linked readings, structs, conditions
        done = [r for r in titled if isinstance(r, BibRecord)]
        assert sum(bool(r.title_reading) for r in done) >= 200
        assert sum(len(r.authors) for r in done) >= 233 and sum(len(r.subjects) for r in done) >= 100
        assert any(r.warnings for r in done)


def test_jpmarc_fixture_maps_the_same() -> None:
    profile = load_profile("jpmarc-unimarc")
    for record in jpmarc_records():
        result = assert_same(profile, record)
        assert isinstance(result, BibRecord) and result.title_reading


def test_the_compiled_mapper_is_what_map_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that could fail: break the interpreter's scalar reading and only the interpreted path changes."""
    profile = load_profile("ndl-marc21")
    record = decode_utf8(raw_records()[0])
    assert record is not None
    before = mapped(profile, record, False)
    monkeypatch.setattr(marc_import, "_scalar", lambda sources, view: "X")
    after, broken = mapped(profile, record, False), mapped(profile, record, True)
    assert isinstance(before, BibRecord) and isinstance(after, BibRecord) and isinstance(broken, BibRecord)
    assert after.to_json() == before.to_json() and broken.title == "X" != before.title


# ------------------------------------------------------------------------------------------------ random records

TAGS = ["001", "003", "008", "020", "040", "041", "082", "084", "100", "110", "245", "246", "250", "260", "264",
        "300", "490", "500", "504", "650", "651", "653", "700", "710", "740", "830", "856"]
CODES = "abcdenpvxyz0246u"
WORDS = ["猫", "ネコ", "Neko", "東京 :", "岩波書店,", "1990.", "c1990", "njb/09", "njb/10", "ndlsh", "lcsh", "x-ray",
         "jpn", "eng", "a / b / c", "913.6", "J.", "...", "|||", "uuuu", "  ", "", "--", "978-4-00-310101-8",
         "4-00-310101-4", "1800円", "http://example.jp/", "Smith, John,", "1867-1916"]


def _value(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))


# (tag, indicators, subfields, control data) of a field
FieldSpec = tuple[str, str | None, list[tuple[str, str]], str | None]


def random_record(rng: random.Random, n: int) -> tuple[str, list[FieldSpec]]:
    """(leader, fields as (tag, indicators, subfields, data)), with 880s linked, mislinked or missing."""
    leader = f"00000{rng.choice('ncd')}{rng.choice('amt')}m  2200000   4500"
    fields: list[FieldSpec] = []
    fields.append(("001", None, [], f" JP{n:06d} " if rng.random() < 0.95 else ""))
    occurrence = 0
    tags = [rng.choice(TAGS[1:]) for _ in range(rng.randint(2, 14))]
    if rng.random() < 0.9:  # most have a title
        tags.append("245")
    for tag in tags:
        if tag in ("003", "008"):
            data = rng.choice(["JTNDL", "900101s1990    ja j   |  000 0 jpn  ", "short", "   "])
            fields.append((tag, None, [], data))
            continue
        indicators = rng.choice(" 0127") + rng.choice(" 01247")
        subfields = [(rng.choice(CODES), _value(rng)) for _ in range(rng.randint(0, 5))]
        if tag in ("245", "653") and rng.random() < 0.9:
            subfields.insert(0, ("a", _value(rng)))
        if rng.random() < 0.5:
            occurrence += 1
            subfields.insert(0, ("6", f"880-{occurrence:02d}"))
            for script in rng.sample(["$1", "(B", "$1"], rng.randint(0, 2)):
                if rng.random() < 0.8:  # else a link to nothing
                    linked = [(c, _value(rng)) for c, _ in subfields[1:]]
                    fields.append(("880", indicators, [("6", f"{tag}-{occurrence:02d}/{script}"), *linked], None))
        fields.append((tag, indicators, subfields, None))
    if rng.random() < 0.3:  # a field given twice, as real records sometimes have
        fields.append(rng.choice(fields))
    rng.shuffle(fields)
    return leader, fields


def as_marc_record(leader: str, fields: list[FieldSpec]) -> MarcRecord:
    return MarcRecord(leader, [marc_import.MarcField(tag, ind, subs, data) for tag, ind, subs, data in fields])


def as_pymarc(leader: str, fields: list[FieldSpec]) -> Record:
    record = Record(leader=leader, force_utf8=True)
    for tag, ind, subs, data in fields:
        if data is not None:
            record.add_field(Field(tag, data=data))
        else:
            record.add_field(Field(tag, Indicators(*(ind or "  ")), [Subfield(c, v) for c, v in subs]))
    return record


@pytest.fixture(scope="module")
def coverage(tmp_path_factory: pytest.TempPathFactory) -> Profile:
    path = Path(tmp_path_factory.mktemp("profiles")) / "coverage.yaml"
    path.write_text(COVERAGE, encoding="utf-8")
    return load_profile(path)


@pytest.mark.parametrize("name", ["coverage", "ndl-marc21", "marc21"])
def test_random_records_map_the_same(name: str, coverage: Profile) -> None:
    profile = coverage if name == "coverage" else load_profile(name)
    rng = random.Random(20261122)
    outcomes = {"mapped": 0, "rejected": 0, "warned": 0, "assembled": 0}
    for n in range(1500):
        leader, fields = random_record(rng, n)
        for record in (as_marc_record(leader, fields), as_pymarc(leader, fields)):
            result = assert_same(profile, record)
            if isinstance(result, str):
                outcomes["rejected"] += 1
                continue
            outcomes["mapped"] += 1
            outcomes["warned"] += bool(result.warnings)
            outcomes["assembled"] += any(s.scheme == "keyword" for s in result.subjects) and len(result.subjects) > 1
    # the random records reached every kind of outcome, so the comparison above covered them
    assert all(outcomes.values()), outcomes
