"""Read MARC (ISO 2709 or MARCXML) as a stream of `BibRecord`s, mapped by a YAML profile.

    for item in read_marc("jm.mrc", "ndl-marc21"):
        if isinstance(item, Rejected): report(item)          # position, byte offset, reason
        else: save(item.record)                              # item.position, item.offset

Profiles are mapping files in `api/catalog/profiles/` (the language is documented in
`profiles/README.md`); `load_profile()` compiles one, `available_profiles()` lists them. A new
format is a new file, not new code.

Reading ISO 2709: records are framed by the record terminator (0x1D), not by the length in the
leader, so a record with a corrupt leader or directory costs only itself: it is reported and
reading resumes at the next record. (pymarc's own reader stops at the first bad record length,
and a wrong length there swallows the following records.) A well-formed UTF-8 record, nearly every
one, is checked and decoded in one pass by `decode_utf8`; any other is checked in detail (leader,
base address, directory entries, field terminators, character coding), which names what is wrong,
and then decoded by a pymarc `MARCReader`; when that yields None, its `current_exception` becomes the
reason.

Reading MARCXML: a streaming expat parser (any namespace or none), one record at a time; `raw` is
the record re-serialized by pymarc.record_to_xml, since an XML fragment cut from its file would
lose its namespace declarations. XML that is not well-formed cannot be resynchronised: the
reader reports where it broke and stops.

A large ISO 2709 file is decoded and mapped in worker processes (one per core, SHOKA_IMPORT_WORKERS):
this process only frames the records and hands them out in batches, and the items come back in file
order. Decoding and mapping cost about 0.16 ms of CPU a JAPAN/MARC record, more than saving it (about
0.13 ms with PostgreSQL's part); `staged=True` also fills readings and encodes the rows there.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, fields
from functools import lru_cache, partial
from pathlib import Path
from typing import IO, Any, Literal, overload
from xml.parsers import expat

import yaml
from pymarc import Field, Indicators, MARCReader, Record, Subfield
from pymarc.marcxml import record_to_xml
from stdnum import isbn as stdnum_isbn
from stdnum.exceptions import ValidationError

from api.catalog.bib import (
    BibRecord,
    Classification,
    Imported,
    ImportItem,
    Name,
    Rejected,
    Series,
    Staged,
    Subject,
    Title,
)
from api.config import process_count
from api.runtime.process import settle_bulk_worker

PROFILE_DIR = Path(__file__).parent / "profiles"
PLACEHOLDER = "TODO"

log = logging.getLogger(__name__)


class _NoMissingIndicatorNoise(logging.Filter):
    """Old JAPAN/MARC has no indicators (leader/10 = 0); pymarc logs a warning for every such field."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("missing indicators")


logging.getLogger("pymarc").addFilter(_NoMissingIndicatorNoise())


class ProfileError(ValueError):
    """A mapping profile that cannot be loaded or used."""


class UnknownProfileError(ProfileError):
    """No profile of that name."""


# --------------------------------------------------------------------------------------------------
# What a profile may map: every BibRecord field except the bookkeeping ones.

_STR_TARGETS = frozenset({
    "source", "control_number", "title", "title_reading", "title_transcription", "subtitle", "subtitle_reading",
    "part", "responsibility", "edition", "publisher", "publisher_reading", "publisher_transcription", "place",
    "extent", "ndc", "ndc_edition", "price", "language", "audience", "material_type",
})
_INT_TARGETS = frozenset({"year"})
_LIST_TARGETS = frozenset({"isbns", "links", "notes", "parallel_titles"})
_STRUCT_TARGETS: dict[str, tuple[type, str]] = {
    "authors": (Name, "name"), "series": (Series, "title"), "subjects": (Subject, "term"),
    "classifications": (Classification, "number"), "other_titles": (Title, "title"),
}
_PAIRED_ONLY = frozenset({"reading", "transcription"})  # never shared between items (see README)
_TARGETS = _STR_TARGETS | _INT_TARGETS | _LIST_TARGETS | set(_STRUCT_TARGETS)

_VALUE_KEYS = frozenset({"subfields", "indicator", "positions", "const", "linked", "first", "each", "join", "trim",
                         "extract", "map", "default", "split"})
_SELECT_KEYS = frozenset({"tag", "ind1", "ind2", "when", "unless"})
_STRUCT_SOURCE_KEYS = _SELECT_KEYS | {"item", "per"}
_PROFILE_KEYS = frozenset({"profile", "description", "format", "encoding", "status", "extends", "linked_tag",
                           "fields"})
_FORMATS = ("marc21", "unimarc")
_ENCODINGS = ("utf-8-leader", "utf-8")
_TAG_RE = re.compile(r"^(LDR|[0-9A-Za-z]{3})$")
_FILL = re.compile(r"^(?:[\s|#^]*|u{2,})$")  # blanks, fill characters, 'uuuu' (unknown): no value
_FILL_START = frozenset(" \t|#^u")


# A unit is what a value is read from: (subfields, control data, indicators, linked subfields by script)
_Sub = tuple[str, str]  # (code, value): a pymarc Subfield or a MarcField pair
_Unit = tuple[list[_Sub], str | None, Any, dict[str, list[_Sub]]]


@dataclass(frozen=True, slots=True)
class ValueSpec:
    """How to read one value from a field (see profiles/README.md, "Value keys")."""

    subfields: str | None = None
    indicator: int | None = None
    positions: tuple[int, int] | None = None
    const: str | None = None
    linked: str | None = None
    first: bool = False
    each: bool = False
    join: str = " "
    trim: str = "isbd"
    extract: re.Pattern[str] | None = None
    map: dict[str, str] | None = None
    default: str | None = None
    split: str | None = None


@dataclass(frozen=True, slots=True)
class Source:
    """Which fields to read (tag, indicators, conditions) and what to read from them."""

    tags: tuple[str, ...]
    ind1: str | None = None
    ind2: str | None = None
    when: tuple[tuple[str, re.Pattern[str]], ...] = ()
    unless: tuple[tuple[str, re.Pattern[str]], ...] = ()
    value: tuple[ValueSpec, ...] = ()                        # scalar and list targets
    item: tuple[tuple[str, tuple[ValueSpec, ...]], ...] = ()  # struct targets
    per: str | None = None
    needs_links: bool = False
    placeholder: bool = False
    fns: tuple[Callable[[_Unit], list[str]], ...] = ()                           # compiled `value`
    item_fns: tuple[tuple[str, tuple[Callable[[_Unit], list[str]], ...]], ...] = ()  # compiled `item`
    plain: bool = True   # no indicator/when/unless conditions, no per, no links: the fast path
    conditional: bool = False  # has indicator/when/unless conditions


@dataclass
class Profile:
    """A compiled mapping profile."""

    name: str
    description: str
    format: str
    encoding: str
    status: str
    linked_tag: str
    fields: dict[str, tuple[Source, ...]]
    path: Path
    placeholders: list[str]
    uses_links: bool = field(init=False)
    plan: list[tuple[str, int, tuple[Source, ...], frozenset[str] | None]] = field(init=False)
    mapper: Callable[[_View], dict[str, Any]] = field(init=False, repr=False)  # the plan compiled
    # The directory tags of the fields the plan reads (with 001, which a rejection names, and the linked
    # fields): `decode_utf8` leaves the others undecoded.
    read_tags: frozenset[bytes] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.uses_links = any(s.needs_links for sources in self.fields.values() for s in sources)
        self.plan = []
        for target, sources in self.fields.items():
            kind = _STRUCTS if target in _STRUCT_TARGETS else _LISTS if target in _LIST_TARGETS else _SCALARS
            # the tags a target reads: when a record has none of them the target is skipped outright
            tags = None if any(s.tags == ("",) for s in sources) else frozenset(t for s in sources for t in s.tags)
            self.plan.append((target, kind, sources, tags))
        read = {t for sources in self.fields.values() for s in sources for t in s.tags if t not in ("", "LDR")}
        read |= {"001", self.linked_tag} if self.uses_links else {"001"}
        self.read_tags = frozenset(t.encode("ascii", "replace") for t in read)
        from api.catalog.mapping_compiler import compile_profile

        self.mapper = compile_profile(self)

    def map_record(self, record: Record, *, raw: bytes | None = None, raw_format: str | None = None) -> BibRecord:
        """Map one pymarc Record. Raises `MappingError` when a required field (source, control
        number, title) comes out empty."""
        return _map(self, record, raw, raw_format or self.format)


_SCALARS, _LISTS, _STRUCTS = 0, 1, 2


class MappingError(ValueError):
    """A record that maps to nothing usable (no title, no control number)."""


# --------------------------------------------------------------------------------------------------
# Loading profiles


def available_profiles() -> list[str]:
    """Names of the profiles shipped in api/catalog/profiles/."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(name: str | Path) -> Profile:
    """A profile by name ('ndl-marc21') or by path to a .yaml file."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = PROFILE_DIR / f"{name}.yaml"
        if not path.is_file():
            raise UnknownProfileError(f"unknown profile {str(name)!r}; available profiles: "
                                      f"{', '.join(available_profiles())}")
    elif not path.is_file():
        raise UnknownProfileError(f"profile file {str(path)!r} does not exist")
    return _load_cached(path.resolve(), path.stat().st_mtime_ns)


@lru_cache(maxsize=32)
def _load_cached(path: Path, _mtime: int) -> Profile:
    return _compile(path, _resolve(path, ()))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ProfileError(f"{path.name}: not valid YAML: {e}") from e
    if not isinstance(doc, dict):
        raise ProfileError(f"{path.name}: a profile is a YAML mapping with at least 'profile' and 'fields'")
    unknown = set(doc) - _PROFILE_KEYS
    if unknown:
        raise ProfileError(f"{path.name}: unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(_PROFILE_KEYS)}")
    if doc.get("profile") != path.stem:
        raise ProfileError(f"{path.name}: 'profile' must be the file name without .yaml ({path.stem!r}), "
                           f"got {doc.get('profile')!r}")
    if not isinstance(doc.get("fields"), dict):
        raise ProfileError(f"{path.name}: 'fields' must be a mapping of BibRecord field -> source(s)")
    return doc


def _resolve(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """The profile document with its `extends` chain applied: the child's top-level keys win, and
    its `fields` replace the parent's field by field (`field: null` removes one)."""
    doc = _read_yaml(path)
    parent_name = doc.get("extends")
    if not parent_name:
        return doc
    parent_path = (path.parent / f"{parent_name}.yaml").resolve()
    if parent_path in chain or parent_path == path.resolve():
        raise ProfileError(f"{path.name}: 'extends: {parent_name}' forms a cycle")
    if not parent_path.is_file():
        raise ProfileError(f"{path.name}: extends unknown profile {parent_name!r}")
    parent = _resolve(parent_path, (*chain, path.resolve()))
    merged = {**parent, **{k: v for k, v in doc.items() if k != "fields"}}
    merged_fields = dict(parent["fields"])
    for target, spec in doc["fields"].items():
        if spec is None:
            merged_fields.pop(target, None)
        else:
            merged_fields[target] = spec
    merged["fields"] = merged_fields
    merged["profile"] = doc["profile"]
    return merged


def _compile(path: Path, doc: dict[str, Any]) -> Profile:
    where = path.name
    fmt = doc.get("format")
    if fmt not in _FORMATS:
        raise ProfileError(f"{where}: 'format' must be one of {_FORMATS}, got {fmt!r}")
    encoding = doc.get("encoding", "utf-8-leader" if fmt == "marc21" else "utf-8")
    if encoding not in _ENCODINGS:
        raise ProfileError(f"{where}: 'encoding' must be one of {_ENCODINGS}, got {encoding!r}")
    status = doc.get("status", "ready")
    if status not in ("ready", "skeleton"):
        raise ProfileError(f"{where}: 'status' must be 'ready' or 'skeleton', got {status!r}")
    compiled: dict[str, tuple[Source, ...]] = {}
    placeholders: list[str] = []
    for target, spec in doc["fields"].items():
        if target not in _TARGETS:
            raise ProfileError(f"{where}: fields.{target}: not a BibRecord field that can be mapped; "
                               f"mappable: {', '.join(sorted(_TARGETS))}")
        specs = spec if isinstance(spec, list) else [spec]
        sources = tuple(_compile_source(f"{where}: fields.{target}[{i}]", target, s) for i, s in enumerate(specs))
        placeholders += [f"fields.{target}[{i}]" for i, s in enumerate(sources) if s.placeholder]
        compiled[target] = sources
    if "title" not in compiled:
        raise ProfileError(f"{where}: the profile must map 'title'")
    return Profile(name=path.stem, description=str(doc.get("description") or "").strip(), format=fmt,
                   encoding=encoding, status=status, linked_tag=str(doc.get("linked_tag", "880")),
                   fields=compiled, path=path, placeholders=placeholders)


def _tags(where: str, value: Any) -> tuple[tuple[str, ...], bool]:
    items = value if isinstance(value, list) else [value]
    tags: list[str] = []
    placeholder = False
    for t in items:
        if isinstance(t, int):
            raise ProfileError(f"{where}: tag {t!r} must be quoted (write '020', not 020: YAML reads 020 as a number)")
        if not isinstance(t, str):
            raise ProfileError(f"{where}: 'tag' must be a string or a list of strings, got {t!r}")
        if t.startswith(PLACEHOLDER):
            placeholder = True
        elif not _TAG_RE.match(t):
            raise ProfileError(f"{where}: {t!r} is not a tag (three letters/digits, or LDR for the leader)")
        tags.append(t)
    if not tags:
        raise ProfileError(f"{where}: 'tag' is required")
    return tuple(tags), placeholder


def _indicator_set(where: str, value: Any) -> str | None:
    if value is None:
        return None
    s = str(value)
    return s.replace("#", " ").replace("_", " ")


def _conditions(where: str, value: Any) -> tuple[tuple[str, re.Pattern[str]], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise ProfileError(f"{where}: 'when'/'unless' must map a subfield code to a regular expression")
    out = []
    for code, pattern in value.items():
        try:
            out.append((str(code), re.compile(str(pattern))))
        except re.error as e:
            raise ProfileError(f"{where}: bad regular expression {pattern!r}: {e}") from e
    return tuple(out)


def _compile_source(where: str, target: str, spec: Any) -> Source:
    if not isinstance(spec, dict):
        raise ProfileError(f"{where}: a source is a mapping with at least 'tag' (or 'const'), got {spec!r}")
    is_struct = target in _STRUCT_TARGETS
    if "tag" not in spec:
        if is_struct or "const" not in spec:
            raise ProfileError(f"{where}: 'tag' is required")
        # a bare constant: {const: JTNDL}
        value = _compile_value(where, spec)
        return Source(tags=("",), value=(value,), fns=(_value_fn(value),))
    allowed = _STRUCT_SOURCE_KEYS if is_struct else _SELECT_KEYS | _VALUE_KEYS
    unknown = set(spec) - allowed
    if unknown:
        hint = " (struct fields map their parts under 'item')" if is_struct else ""
        raise ProfileError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}{hint}")
    tags, placeholder = _tags(where, spec["tag"])
    common: dict[str, Any] = {
        "tags": tags, "ind1": _indicator_set(where, spec.get("ind1")), "ind2": _indicator_set(where, spec.get("ind2")),
        "when": _conditions(where, spec.get("when")), "unless": _conditions(where, spec.get("unless")),
        "placeholder": placeholder,
    }
    if is_struct:
        cls, primary = _STRUCT_TARGETS[target]
        attrs = {f.name for f in fields(cls)}
        item = spec.get("item")
        if not isinstance(item, dict) or primary not in item:
            raise ProfileError(f"{where}: 'item' must map at least {primary!r} (parts: {', '.join(sorted(attrs))})")
        compiled_item = []
        for attr, attr_spec in item.items():
            if attr not in attrs:
                raise ProfileError(f"{where}: item.{attr}: {cls.__name__} has no such part "
                                   f"(parts: {', '.join(sorted(attrs))})")
            alts = attr_spec if isinstance(attr_spec, list) else [attr_spec]
            compiled_item.append((attr, tuple(_compile_value(f"{where}: item.{attr}", a) for a in alts)))
        # the primary part first: it decides how many items a field gives
        compiled_item.sort(key=lambda kv: kv[0] != primary)
        per = spec.get("per")
        needs = any(v.linked for _, alts in compiled_item for v in alts)
        item_fns = tuple((attr, tuple(_value_fn(v) for v in alts)) for attr, alts in compiled_item)
        return Source(**common, item=tuple(compiled_item), per=str(per) if per else None, needs_links=needs,
                      item_fns=item_fns, plain=not _conditional(common) and not per and not needs,
                      conditional=_conditional(common))
    value = _compile_value(where, {k: v for k, v in spec.items() if k in _VALUE_KEYS})
    return Source(**common, value=(value,), needs_links=bool(value.linked), fns=(_value_fn(value),),
                  plain=not _conditional(common) and not value.linked, conditional=_conditional(common))


def _conditional(common: dict[str, Any]) -> bool:
    return common["ind1"] is not None or common["ind2"] is not None or bool(common["when"] or common["unless"])


def _compile_value(where: str, spec: Any) -> ValueSpec:
    if isinstance(spec, str):
        return ValueSpec(subfields=spec)
    if not isinstance(spec, dict):
        raise ProfileError(f"{where}: a value is subfield codes ('ab') or a mapping, got {spec!r}")
    unknown = set(spec) - _VALUE_KEYS
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_VALUE_KEYS)}")
    kw: dict[str, Any] = {}
    if "subfields" in spec:
        kw["subfields"] = str(spec["subfields"])
    if "indicator" in spec:
        if spec["indicator"] not in (1, 2):
            raise ProfileError(f"{where}: 'indicator' is 1 or 2")
        kw["indicator"] = spec["indicator"]
    if "positions" in spec:
        pos = spec["positions"]
        if not (isinstance(pos, list) and len(pos) == 2 and all(isinstance(p, int) and p >= 0 for p in pos)
                and pos[0] < pos[1]):
            raise ProfileError(f"{where}: 'positions' is [start, end) with 0 <= start < end, e.g. [35, 38]")
        kw["positions"] = (pos[0], pos[1])
    for key in ("const", "linked", "join", "default", "split"):
        if key in spec and spec[key] is not None:
            kw[key] = str(spec[key])
    for key in ("first", "each"):
        if key in spec:
            kw[key] = bool(spec[key])
    if "trim" in spec:
        if spec["trim"] not in ("isbd", "end", "space"):
            raise ProfileError(f"{where}: 'trim' is 'isbd', 'end' or 'space'")
        kw["trim"] = spec["trim"]
    if "extract" in spec:
        try:
            kw["extract"] = re.compile(str(spec["extract"]))
        except re.error as e:
            raise ProfileError(f"{where}: bad regular expression in 'extract': {e}") from e
    if "map" in spec:
        if not isinstance(spec["map"], dict):
            raise ProfileError(f"{where}: 'map' must be a mapping of value -> value")
        kw["map"] = {str(k): str(v) for k, v in spec["map"].items()}
    return ValueSpec(**kw)


# --------------------------------------------------------------------------------------------------
# Mapping one record

_TRIMMABLE_END = frozenset(" /:;=,.\t\r\n\u3000")


def isbd_trim(text: str) -> str:
    """Strip whitespace and trailing ISBD punctuation (' /', ' :', ' ;', ' =', ',', '.'); keeps a final
    period after an initial ('J.') and an ellipsis ('...')."""
    if not text or (text[-1] not in _TRIMMABLE_END and not text[0].isspace()):
        return text
    s = text.strip()
    while s:
        last = s[-1]
        if last in "/:;=,":
            s = s[:-1].rstrip()
        elif last == ".":
            if s.endswith("...") or (len(s) >= 2 and s[-2].isascii() and s[-2].isalpha()
                                     and (len(s) == 2 or s[-3] in " .")):
                break
            s = s[:-1].rstrip()
        else:
            break
    return s


class _Leader:
    """The leader as a pseudo control field, so `tag: LDR` reads it with `positions`."""

    __slots__ = ("data",)
    tag = "LDR"
    control_field = True
    indicators = None
    subfields: list[_Sub] = []  # noqa: RUF012 - never mutated

    def __init__(self, data: str) -> None:
        self.data = data


_LINK_RE = re.compile(r"^(\d{3})-(\d{2,})")


def _six(subfields: list[_Sub]) -> str | None:
    """The field's $6 (linkage), usually its first subfield."""
    if subfields and subfields[0][0] == "6":
        return subfields[0][1]
    for code, value in subfields:
        if code == "6":
            return value
    return None


class _View:
    """A record prepared for mapping: fields by tag, and 880 fields by (linked tag, occurrence)."""

    __slots__ = ("by_tag", "links", "links_by_field", "missing_links", "warnings")

    def __init__(self, record: Record | MarcRecord, linked_tag: str | None) -> None:
        fields = record.by_tag if isinstance(record, MarcRecord) else fields_by_tag(record.fields)
        by_tag: dict[str, list[Any]] = {"LDR": [_Leader(str(record.leader))], **fields}
        self.by_tag = by_tag
        self.links_by_field: dict[int, dict[str, list[_Sub]]] = {}
        self.links: dict[tuple[str, str], dict[str, list[_Sub]]] = {}
        self.missing_links: set[str] = set()
        self.warnings: list[str] = []
        if linked_tag:
            links = self.links
            for f in by_tag.get(linked_tag, ()):
                six = _six(f.subfields)
                if not six or six[3:4] != "-":
                    continue
                head, _, script = six.partition("/")
                key = (head[:3], head[4:])
                if not key[1].isdigit():
                    continue
                script = script.partition("/")[0]
                if key in links:
                    links[key][script] = f.subfields
                else:
                    links[key] = {script: f.subfields}

    def links_of(self, f: Any) -> dict[str, list[_Sub]]:
        key = id(f)
        found = self.links_by_field.get(key)
        if found is None:
            found = self.links_by_field[key] = self._find_links(f)
        return found

    def _find_links(self, f: Any) -> dict[str, list[_Sub]]:
        six = _six(f.subfields)
        m = _LINK_RE.match(six or "")
        if not m or not six or int(m.group(2)) == 0:
            return {}
        occ = m.group(2)
        found = self.links.get((f.tag, occ))
        if found is None:
            key = f"{f.tag} $6 {six}"
            if key not in self.missing_links:
                self.missing_links.add(key)
                self.warnings.append(f"{f.tag}: $6 {six} points to a linked field (reading) that is not in the record")
            return {}
        return found


def _selected(source: Source, f: Any) -> bool:
    if source.ind1 is not None or source.ind2 is not None:
        if f.control_field:
            return False
        ind = f.indicators
        if source.ind1 is not None and ind[0] not in source.ind1:
            return False
        if source.ind2 is not None and ind[1] not in source.ind2:
            return False
    for code, pattern in source.when:
        if not any(c == code and pattern.search(v) for c, v in f.subfields):
            return False
    return not any(c == code and pattern.search(v) for code, pattern in source.unless for c, v in f.subfields)


_NO_LINKS: dict[str, list[_Sub]] = {}


def _units(source: Source, f: Any, view: _View) -> list[_Unit]:
    if f.control_field:
        return [([], f.data, None, _NO_LINKS)]
    links = view.links_of(f) if source.needs_links else _NO_LINKS
    if not source.per:
        return [(f.subfields, None, f.indicators, links)]
    groups = _group(f.subfields, source.per)
    linked_groups = {script: _group(subs, source.per) for script, subs in links.items()}
    return [(g, None, f.indicators, {s: lg[i] for s, lg in linked_groups.items() if i < len(lg)})
            for i, g in enumerate(groups)]


def _group(subfields: list[_Sub], code: str) -> list[list[_Sub]]:
    """Split a field's subfields into groups that each start at `code`; subfields before the first
    `code` (e.g. $6) go with every group."""
    lead: list[_Sub] = []
    groups: list[list[_Sub]] = []
    for sf in subfields:
        if sf[0] == code:
            groups.append(list(lead))
            groups[-1].append(sf)
        elif groups:
            groups[-1].append(sf)
        else:
            lead.append(sf)
    return groups


def _values(spec: ValueSpec, unit: _Unit) -> list[str]:
    subs, data, ind, links = unit
    vals: list[str]
    if spec.const is not None:
        vals = [spec.const]
    elif spec.indicator is not None:
        vals = [ind[spec.indicator - 1]] if ind is not None else []
    elif data is not None and not spec.linked:
        vals = [data]
    else:
        if spec.linked:
            subs = links.get(spec.linked, [])
        codes = spec.subfields
        picked = [v for c, v in subs if c not in "68"] if codes is None else [v for c, v in subs if c in codes]
        if spec.first:
            del picked[1:]
        if spec.each or len(picked) < 2:
            vals = picked
        else:  # joining several subfields: trim each part first, so no ' :' is left inside
            if spec.positions is None:
                picked = [isbd_trim(v) for v in picked] if spec.trim == "isbd" else [v.strip() for v in picked]
            vals = [spec.join.join(p for p in picked if p)]
    if spec.positions is not None:
        start, end = spec.positions
        vals = [v[start:end] for v in vals]
    if spec.split is not None:
        vals = [part for v in vals for part in v.split(spec.split)]
    out: list[str] = []
    for v in vals:
        v = v.strip() if spec.trim == "space" else isbd_trim(v)
        if spec.extract is not None:
            m = spec.extract.search(v)
            if m is None:
                continue
            v = (m.group(1) if m.groups() else m.group(0)).strip()
        if spec.map is not None:
            mapped = spec.map.get(v)
            if mapped is None:
                continue
            v = mapped
        if v and (v[0] not in _FILL_START or not _FILL.match(v)):
            out.append(v)
    if not out and spec.default is not None:
        out = [spec.default]
    return out


def _common_spec(spec: ValueSpec) -> bool:
    """The common case: subfields, ISBD trim, optional join/first/linked, nothing else (the one place that says
    so: `_value_fn` and mapping_compiler read such a spec without `_values`)."""
    return (spec.const is None and spec.indicator is None and spec.positions is None and spec.split is None
            and spec.extract is None and spec.map is None and spec.default is None and not spec.each
            and spec.trim == "isbd")


def _value_fn(spec: ValueSpec) -> Callable[[_Unit], list[str]]:
    """A function reading `spec` from a unit: a fast closure for the common case, the general `_values`
    otherwise."""
    if not _common_spec(spec):
        return partial(_values, spec)
    codes, join, first, linked = spec.subfields, spec.join, spec.first, spec.linked

    def fast(unit: _Unit) -> list[str]:
        subs, data, _ind, links = unit
        if data is not None and not linked:
            v = isbd_trim(data)
        else:
            if linked:
                subs = links.get(linked, [])
            picked = [v for c, v in subs if c not in "68"] if codes is None else [v for c, v in subs if c in codes]
            if not picked:
                return []
            if first or len(picked) == 1:
                v = isbd_trim(picked[0])
            else:
                v = join.join([p for p in map(isbd_trim, picked) if p])
        if not v or (v[0] in _FILL_START and _FILL.match(v)):
            return []
        return [v]

    return fast


def _unit_list(source: Source, view: _View) -> Iterator[_Unit]:
    """Every unit the source reads from, in record order of its tags; a field's links are looked up (and a
    missing one warned of) as its unit is reached, so a scalar target stops at the first value."""
    by_tag = view.by_tag
    plain, conditional, simple_links = source.plain, source.conditional, source.needs_links and not source.per
    for tag in source.tags:
        for f in by_tag.get(tag, ()):
            if plain:
                yield (f.subfields, f.data, f.indicators, _NO_LINKS)
            elif conditional and not _selected(source, f):
                continue
            elif simple_links and not f.control_field:
                yield (f.subfields, None, f.indicators, view.links_of(f))
            else:
                yield from _units(source, f, view)


_CONST_UNIT: _Unit = ([], None, None, _NO_LINKS)


def _scalar(sources: tuple[Source, ...], view: _View) -> str | None:
    by_tag = view.by_tag
    for source in sources:
        fns = source.fns
        if source.tags == ("",):  # a bare constant
            vals = fns[0](_CONST_UNIT)
            if vals:
                return vals[0]
            continue
        if source.plain:
            for tag in source.tags:
                for f in by_tag.get(tag, ()):
                    unit = (f.subfields, f.data, f.indicators, _NO_LINKS)
                    for fn in fns:
                        vals = fn(unit)
                        if vals:
                            return vals[0]
            continue
        for unit in _unit_list(source, view):
            for fn in fns:
                vals = fn(unit)
                if vals:
                    return vals[0]
    return None


def _list(sources: tuple[Source, ...], view: _View) -> list[str]:
    out: list[str] = []
    for source in sources:
        units = [_CONST_UNIT] if source.tags == ("",) else _unit_list(source, view)
        for unit in units:
            for fn in source.fns:
                vals = fn(unit)
                if vals:
                    out.extend(v for v in vals if v not in out)
                    break
    return out


def _structs(target: str, sources: tuple[Source, ...], view: _View) -> list[Any]:
    cls, _primary = _STRUCT_TARGETS[target]
    out: list[Any] = []
    for source in sources:
        for unit in _unit_list(source, view):
            parts: list[tuple[str, list[str]]] = []
            for attr, fns in source.item_fns:
                vals = []
                for fn in fns:
                    vals = fn(unit)
                    if vals:
                        break
                if not parts and not vals:
                    break   # no primary value: no item from this unit
                parts.append((attr, vals))
            if not parts:
                continue
            if len(parts[0][1]) == 1 and all(len(vals) <= 1 for _, vals in parts):   # the usual case: one item
                obj = cls(**{attr: vals[0] if vals else None for attr, vals in parts})
                if obj not in out:
                    out.append(obj)
                continue
            _assemble(target, parts, out, view)
    return out


def _assemble(target: str, parts: list[tuple[str, list[str]]], out: list[Any], view: _View) -> None:
    """The items of one unit whose parts hold several values each (the primary part first): the i-th values
    together; a part with one value goes with every item, except a reading or transcription."""
    cls, _primary = _STRUCT_TARGETS[target]
    n = len(parts[0][1])
    for i in range(n):
        kwargs: dict[str, str | None] = {}
        for attr, vals in parts:
            if len(vals) == n:
                kwargs[attr] = vals[i]
            elif len(vals) == 1 and attr not in _PAIRED_ONLY:
                kwargs[attr] = vals[0]
            else:
                if vals:
                    view.warnings.append(f"{target}: {len(vals)} {attr} value(s) for {n} item(s) "
                                         f"from one field; {attr} left empty")
                kwargs[attr] = None
        obj = cls(**kwargs)
        if obj not in out:
            out.append(obj)


def _interpreted(profile: Profile, view: _View) -> dict[str, Any]:
    """The profile's targets read by walking its plan: the reference that `mapping_compiler` unrolls."""
    values: dict[str, Any] = {}
    present = view.by_tag.keys()
    for target, kind, sources, tags in profile.plan:
        if tags is not None and present.isdisjoint(tags):
            continue
        if kind == _SCALARS:
            values[target] = _scalar(sources, view)
        elif kind == _LISTS:
            values[target] = _list(sources, view)
        else:
            values[target] = _structs(target, sources, view)
    return values


def _map(profile: Profile, record: Record | MarcRecord, raw: bytes | None, raw_format: str,
         interpret: bool = False) -> BibRecord:
    view = _View(record, profile.linked_tag if profile.uses_links else None)
    values = _interpreted(profile, view) if interpret else profile.mapper(view)
    warnings = view.warnings
    missing = [name for name in ("source", "control_number", "title") if not values.get(name)]
    if missing:
        what = {"source": "record source (e.g. 003)", "control_number": "control number (001)",
                "title": "title"}
        raise MappingError("the record has no " + " and no ".join(what[m] for m in missing)
                           + f" under profile {profile.name!r}")
    year = values.pop("year", None)
    if year is not None:
        if year.isdigit() and 1000 <= int(year) <= 2999:
            values["year"] = int(year)
        else:
            warnings.append(f"year {year!r} is not a four-digit year; left empty")
    isbns: list[str] = []
    for candidate in values.pop("isbns", []):
        normalized = normalize_isbn(candidate)
        if normalized is None:
            warnings.append(f"invalid ISBN {candidate!r} ignored")
        elif normalized not in isbns:
            isbns.append(normalized)
    values["isbns"] = isbns
    if not values.get("ndc"):
        ndcs = [c for c in values.get("classifications", []) if c.scheme == "ndc"]
        if ndcs:
            best = max(ndcs, key=lambda c: int(c.edition) if (c.edition or "").isdigit() else -1)
            values["ndc"], values["ndc_edition"] = best.number, best.edition
    if values.get("language"):
        values["language"] = values["language"].lower()
    if not values.get("material_type"):
        values["material_type"] = "book"
    return BibRecord(**{k: v for k, v in values.items() if v is not None}, warnings=warnings, raw=raw,
                     raw_format=raw_format)


_ISBN_CANDIDATE = re.compile(r"[0-9][0-9\- ]{8,}[0-9Xx]")


def normalize_isbn(text: str) -> str | None:
    """ISBN-10 or -13 (hyphens, spaces, qualifiers like '(pbk.)' allowed) -> ISBN-13 digits, or None."""
    m = _ISBN_CANDIDATE.search(text)
    if not m:
        return None
    try:
        return str(stdnum_isbn.to_isbn13(stdnum_isbn.validate(m.group(0))))
    except ValidationError:
        return None


# --------------------------------------------------------------------------------------------------
# Reading ISO 2709

RECORD_TERMINATOR = 0x1D
FIELD_TERMINATOR = 0x1E
_BLOCK = 1 << 20


MAX_RECORD = 99_999   # ISO 2709: five digits of record length
OVERSIZE = "oversize"


def _frames(stream: IO[bytes]) -> Iterator[tuple[int, bytes, bool | str]]:
    """(offset, bytes, complete) for each record: bytes up to and including the record terminator.
    Whitespace between records (line breaks some tools add) is skipped; the last frame of a file
    that does not end with a terminator comes out with complete=False. More than 99,999 bytes
    without a terminator cannot be a record: the first 99,999 come out as one frame with
    complete='oversize' and the rest, up to the next terminator, is skipped, so a non-MARC file
    costs one rejection and bounded memory."""
    buf = bytearray()
    base = 0
    skipping = False
    while True:
        block = stream.read(_BLOCK)
        if not block:
            break
        buf += block
        start = 0
        while True:
            end = buf.find(RECORD_TERMINATOR, start)
            if end < 0:
                break
            if skipping:
                skipping = False
            elif end + 1 - start > MAX_RECORD + 64:   # (some slack for line breaks between records)
                yield base + start, bytes(buf[start:start + MAX_RECORD]), OVERSIZE
            else:
                chunk = bytes(buf[start:end + 1])
                stripped = chunk.lstrip(b"\r\n\t \x00")
                yield base + start + len(chunk) - len(stripped), stripped, True
            start = end + 1
        if len(buf) - start > MAX_RECORD:
            if not skipping:
                yield base + start, bytes(buf[start:start + MAX_RECORD]), OVERSIZE
                skipping = True
            start = len(buf)
        del buf[:start]
        base += start
    rest = bytes(buf)
    stripped = rest.lstrip(b"\r\n\t \x00\x1a")
    if stripped.strip(b"\r\n\t \x00\x1a") and not skipping:
        yield base + len(rest) - len(stripped), stripped, False


def _structure_problem(chunk: bytes, complete: bool | str) -> str | None:
    """Why this is not a well-formed ISO 2709 record, in plain words; None when it is."""
    if chunk[:1] == b"<" or chunk[:5] == b"\xef\xbb\xbf<?":
        return "this is XML, not ISO 2709 MARC (read MARCXML with marcxml=True)"
    if complete == OVERSIZE:
        return (f"no record terminator within {MAX_RECORD:,} bytes (the longest a MARC record can be): this is "
                "not MARC data, or the file is damaged; skipped to the next record terminator")
    if not complete:
        declared = chunk[:5].decode("ascii", "replace")
        if declared.isdigit():
            return (f"truncated record: the file ends {len(chunk)} bytes into a record whose leader says it is "
                    f"{int(declared)} bytes long (no record terminator)")
        return f"truncated data at the end of the file: {len(chunk)} bytes with no record terminator"
    if len(chunk) < 26:
        return f"bad leader: the record is only {len(chunk)} bytes, shorter than a 24-byte leader and a directory"
    try:
        leader = chunk[:24].decode("ascii")
    except UnicodeDecodeError:
        return "bad leader: the 24-byte leader contains non-ASCII bytes"
    if not leader[:5].isdigit():
        return f"bad leader: the record length (leader bytes 0-4) is {leader[:5]!r}, not five digits"
    length = int(leader[:5])
    if length != len(chunk):
        return (f"bad leader: the leader says the record is {length} bytes long, but it is {len(chunk)} bytes "
                "up to its record terminator")
    if not leader[12:17].isdigit():
        return f"bad leader: the base address of data (leader bytes 12-16) is {leader[12:17]!r}, not five digits"
    base = int(leader[12:17])
    if base < 25 or base >= len(chunk):
        return f"bad leader: the base address of data ({base}) is outside the record ({len(chunk)} bytes)"
    if chunk[base - 1] != FIELD_TERMINATOR:
        return (f"bad directory: no field terminator before the base address of data ({base}); the directory "
                "or the base address is wrong")
    directory = chunk[24:base - 1]
    if len(directory) % 12:
        return f"bad directory: its length ({len(directory)} bytes) is not a multiple of 12"
    data_len = len(chunk) - 1 - base
    for i in range(0, len(directory), 12):
        entry = directory[i:i + 12]
        tag = entry[:3].decode("ascii", "replace")
        if not entry[:3].isalnum():
            return f"bad directory: entry {i // 12 + 1} has tag {tag!r}, not three letters or digits"
        if not entry[3:12].isdigit():
            return f"bad directory: the entry for field {tag} has a non-numeric length or start ({entry[3:12]!r})"
        length, start = int(entry[3:7]), int(entry[7:12])
        if length == 0 or start + length > data_len:
            return (f"bad directory: field {tag} is said to take bytes {start}-{start + length} of the data, "
                    f"which is only {data_len} bytes")
        if chunk[base + start + length - 1] != FIELD_TERMINATOR:
            return (f"bad directory: field {tag} does not end where the directory says (length {length}, start "
                    f"{start}); the directory lengths or offsets are wrong")
    return None


def _utf8_problem(chunk: bytes) -> str | None:
    base = int(chunk[12:17])
    directory = chunk[24:base - 1]
    for i in range(0, len(directory), 12):
        tag = directory[i:i + 3].decode("ascii")
        length, start = int(directory[i + 3:i + 7]), int(directory[i + 7:i + 12])
        data = chunk[base + start:base + start + length - 1]
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            bad = data[e.start:e.start + 4]
            return f"invalid UTF-8 in field {tag}: bytes {bad.hex(' ')} at byte {e.start} of the field"
    return None


def _control_number(chunk: bytes) -> str | None:
    """The 001 of a record that could not be decoded, for the reject report (best effort)."""
    try:
        base = int(chunk[12:17])
        directory = chunk[24:base - 1]
        for i in range(0, len(directory), 12):
            if directory[i:i + 3] == b"001":
                length, start = int(directory[i + 3:i + 7]), int(directory[i + 7:i + 12])
                return chunk[base + start:base + start + length - 1].decode("utf-8", "replace").strip() or None
    except (ValueError, IndexError):
        return None
    return None


# Decoding a well-formed UTF-8 record without pymarc

_ODD_CODE = re.compile("\x1f[^\x00-\x7f]")  # a subfield code pymarc would have to normalise
_SUBFIELD = re.compile("\x1f([^\x1f])([^\x1f]*)", re.DOTALL)  # (code, value) of each subfield of a field


def control_tag(tag: str) -> bool:
    """pymarc's rule: a numeric tag below 010 is a control field (data, no indicators or subfields)."""
    return tag < "010" and tag.isdigit()


class MarcField:
    """A field decoded by `decode_utf8`: what the mapping reads of a pymarc `Field` (tag, indicators,
    (code, value) subfields, control data), without an object for every field and subfield."""

    __slots__ = ("control_field", "data", "indicators", "subfields", "tag")

    def __init__(self, tag: str, indicators: str | None, subfields: list[tuple[str, str]], data: str | None) -> None:
        self.tag = tag
        self.indicators = indicators  # two characters, read as ind[0] and ind[1] like pymarc's Indicators
        self.subfields = subfields
        self.data = data
        self.control_field = data is not None


def fields_by_tag(fields: Iterable[Any]) -> dict[str, list[Any]]:
    """Fields grouped by tag, each tag's in record order."""
    by_tag: dict[str, list[Any]] = {}
    for f in fields:
        same = by_tag.get(f.tag)
        if same is None:
            by_tag[f.tag] = [f]
        else:
            same.append(f)
    return by_tag


class MarcRecord:
    """A record decoded by `decode_utf8`: its leader and its fields in directory order, and the same
    fields by tag (each tag's in directory order), which the mapping reads them by."""

    __slots__ = ("by_tag", "fields", "leader")

    def __init__(self, leader: str, fields: list[MarcField], by_tag: dict[str, list[MarcField]] | None = None) -> None:
        self.leader = leader
        self.fields = fields
        self.by_tag = fields_by_tag(fields) if by_tag is None else by_tag

    def get(self, tag: str) -> MarcField | None:
        same = self.by_tag.get(tag)
        return same[0] if same else None


def decode_utf8(chunk: bytes, tags: frozenset[bytes] | None = None) -> MarcRecord | None:
    """A framed UTF-8 record decoded as pymarc decodes it, or None unless it is well-formed in the
    usual way: everything `_structure_problem` checks, fields laid out one after another in directory
    order, valid UTF-8, ASCII indicators and subfield codes. None sends the record to the checks and
    pymarc, which read the rare ones and say what is wrong with the bad ones. With `tags`, only the
    fields of those tags are decoded (what a profile reads); the whole record is checked all the same.

    pymarc builds a `Field` and `Subfield` objects for each of the 30-odd fields of a JAPAN/MARC
    record, most of which a profile never reads; this costs about a third as much (0.06 against
    0.16 ms a record with the checks). The directory must be exactly the one the data split at the
    field terminators gives (each field's length, and its start right after the one before), so the
    i-th piece is the i-th field; it is written out once and compared, and the data is decoded once."""
    n = len(chunk)
    head = chunk[:24]
    if n < 26 or not head.isascii() or not head[:5].isdigit() or int(head[:5]) != n or not head[12:17].isdigit():
        return None
    base = int(head[12:17])
    if not 25 <= base < n or chunk[base - 1] != FIELD_TERMINATOR or chunk[-1] != RECORD_TERMINATOR:
        return None
    directory = chunk[24:base - 1]
    pieces = chunk[base:-1].split(b"\x1e")
    count = len(pieces) - 1
    if not count or len(directory) != 12 * count or pieces[-1]:  # (pymarc says why a record has no fields)
        return None
    tag_bytes = [directory[i:i + 3] for i in range(0, 12 * count, 12)]
    lengths = [len(piece) + 1 for piece in pieces[:-1]]
    starts = itertools.accumulate(lengths[:-1], initial=0)
    if not b"".join(tag_bytes).isalnum() or directory != (b"%b%04d%05d" * count) % tuple(
            itertools.chain.from_iterable(zip(tag_bytes, lengths, starts, strict=False))):
        return None
    try:
        text = chunk[base:-1].decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _ODD_CODE.search(text):
        return None
    fields: list[MarcField] = []
    by_tag: dict[str, list[MarcField]] = {}
    for raw_tag, body in zip(tag_bytes, text.split("\x1e"), strict=False):
        tag = raw_tag.decode("ascii")
        if tags is not None and raw_tag not in tags:
            # left undecoded, but pymarc refuses a record with non-ASCII indicators in any field
            if not control_tag(tag) and not body.partition("\x1f")[0].isascii():
                return None
            continue
        if control_tag(tag):
            field = MarcField(tag, None, [], body)
        else:
            end = body.find("\x1f")
            indicators = body if end < 0 else body[:end]
            if not indicators.isascii():
                return None
            # missing indicators read as blanks and extra ones are dropped, as pymarc does; an empty subfield
            # (two delimiters together) is skipped
            field = MarcField(tag, (indicators + "  ")[:2], _SUBFIELD.findall(body, end) if end >= 0 else [], None)
        fields.append(field)
        same = by_tag.get(tag)
        if same is None:
            by_tag[tag] = [field]
        else:
            same.append(field)
    return MarcRecord(head.decode("ascii"), fields, by_tag)


def _plain(exc: BaseException | None) -> str:
    if exc is None:
        return "pymarc could not read the record"
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8: {exc.reason} at byte {exc.start}"
    text = str(exc) or type(exc).__name__
    return f"{text} ({type(exc).__name__})"


def _decode(chunk: bytes, profile: Profile) -> Record | str:
    """A pymarc Record for a well-formed chunk, or the reason it cannot be read."""
    coding = chunk[9:10]
    if profile.encoding == "utf-8-leader":
        if coding == b" ":
            return ("MARC-8 encoded (leader/09 is blank); Shoka reads MARC21 in UTF-8 only - convert the file "
                    "first, e.g. yaz-marcdump -f MARC-8 -t UTF-8 -o marc -l 9=97")
        if coding != b"a":
            return f"unknown character coding in leader/09 ({coding.decode('ascii', 'replace')!r}; expected 'a')"
    reader = MARCReader(chunk, to_unicode=True, force_utf8=profile.encoding == "utf-8", utf8_handling="strict")
    try:
        record = next(reader)
    except StopIteration:
        return "pymarc found no record"
    if record is None:
        exc = reader.current_exception
        if isinstance(exc, UnicodeDecodeError):
            return _utf8_problem(reader.current_chunk or chunk) or _plain(exc)
        return _plain(exc)
    return record


def _open(path_or_stream: str | Path | IO[bytes]) -> tuple[IO[bytes], bool]:
    if isinstance(path_or_stream, str | Path):
        return open(path_or_stream, "rb"), True
    return path_or_stream, False


def import_workers() -> int:
    """Reading processes for a large ISO 2709 file: SHOKA_IMPORT_WORKERS, else one per core."""
    return process_count("SHOKA_IMPORT_WORKERS")


PARALLEL_MIN_BYTES = 4 << 20  # smaller files are read in this process: starting the workers costs more
FRAMES_PER_TASK = 500  # records per batch handed to a reading process
TASKS_IN_FLIGHT = 2  # batches queued per process: enough to keep it busy, few enough to bound memory


@overload
def read_marc(path_or_stream: str | Path | IO[bytes], profile_name: str | Path, *, marcxml: bool = False,
              workers: int | None = None, staged: Literal[False] = False) -> Iterator[ImportItem]: ...


@overload
def read_marc(path_or_stream: str | Path | IO[bytes], profile_name: str | Path, *, marcxml: bool = False,
              workers: int | None = None, staged: Literal[True]) -> Iterator[Staged | Rejected]: ...


def read_marc(path_or_stream: str | Path | IO[bytes], profile_name: str | Path, *, marcxml: bool = False,
              workers: int | None = None, staged: bool = False) -> Iterator[ImportItem] | Iterator[Staged | Rejected]:
    """Stream the records of an ISO 2709 (or, with marcxml=True, MARCXML) file as `Imported` /
    `Rejected` items, in file order. An empty file yields nothing. An unknown profile raises
    `UnknownProfileError` (listing the available ones) before anything is read; so does a
    skeleton profile whose placeholders have not been filled in.

    `workers` reading processes decode and map ISO 2709 records; by default `import_workers()` for a
    file of PARALLEL_MIN_BYTES or more, else none (this process). `staged=True` yields `Staged` records
    instead of `Imported` ones, made ready to save where they were read (for `run_import`: a bulk load
    then hands the importing process encoded rows, not records to rebuild from their pickles)."""
    profile = load_profile(profile_name)
    if profile.status == "skeleton":
        raise ProfileError(f"profile {profile.name!r} is a skeleton: fill in the placeholder tags "
                           f"({', '.join(profile.placeholders[:6])}{' ...' if len(profile.placeholders) > 6 else ''})"
                           f" in {profile.path} and set status: ready")
    if marcxml:
        items = _read_xml(path_or_stream, profile)
        return map(_staged, items) if staged else items
    if workers is None:
        large = isinstance(path_or_stream, str | Path) and Path(path_or_stream).stat().st_size >= PARALLEL_MIN_BYTES
        workers = import_workers() if large else 1
    return _read_iso(path_or_stream, profile, workers, staged)


def _staged(item: ImportItem) -> Staged | Rejected:
    from api.catalog.importer import stage

    return stage(item) if isinstance(item, Imported) else item


# (position, byte offset, bytes, complete) of one framed record
_Frame = tuple[int, int, bytes, bool | str]


def _read_iso(path_or_stream: str | Path | IO[bytes], profile: Profile, workers: int = 1,
              staged: bool = False) -> Iterator[Any]:
    stream, owned = _open(path_or_stream)
    try:
        frames = ((position, offset, chunk, complete)
                  for position, (offset, chunk, complete) in enumerate(_frames(stream), start=1))
        if workers > 1:
            yield from _in_processes(profile, frames, workers, staged)
        else:
            for frame in frames:
                item = _item(profile, *frame)
                yield _staged(item) if staged else item
    finally:
        if owned:
            stream.close()


def _item(profile: Profile, position: int, offset: int, chunk: bytes, complete: bool | str) -> ImportItem:
    if complete is True and (profile.encoding == "utf-8" or chunk[9:10] == b"a"):
        record = decode_utf8(chunk, profile.read_tags)
        if record is not None:
            return _mapped(profile, record, position, offset, chunk, profile.format)
    return _item_checked(profile, position, offset, chunk, complete)


def _item_checked(profile: Profile, position: int, offset: int, chunk: bytes, complete: bool | str) -> ImportItem:
    """The item of a record `decode_utf8` left alone: checked in detail, decoded by pymarc."""
    problem = _structure_problem(chunk, complete)
    if problem:
        return Rejected(position, offset, problem)
    decoded = _decode(chunk, profile)
    if isinstance(decoded, str):
        return Rejected(position, offset, decoded, _control_number(chunk))
    return _mapped(profile, decoded, position, offset, chunk, profile.format)


def _items(profile_path: Path, frames: list[_Frame], staged: bool = False) -> list[Any]:
    """A reading process's task: the items of a batch of frames."""
    profile = load_profile(profile_path)
    items = [_item(profile, *frame) for frame in frames]
    return [_staged(item) for item in items] if staged else items


def _in_processes(profile: Profile, frames: Iterable[_Frame], workers: int, staged: bool) -> Iterator[Any]:
    context = multiprocessing.get_context("spawn")  # no fork of a process holding threads and sockets
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=settle_bulk_worker)
    queued: deque[Future[list[Any]]] = deque()
    try:
        frames = iter(frames)
        while batch := list(itertools.islice(frames, FRAMES_PER_TASK)):
            queued.append(pool.submit(_items, profile.path, batch, staged))
            while len(queued) >= workers * TASKS_IN_FLIGHT:
                yield from queued.popleft().result()
        while queued:
            yield from queued.popleft().result()
    finally:  # also when the reader stops early: drop the batches not started
        pool.shutdown(wait=True, cancel_futures=True)


def _mapped(profile: Profile, record: Record | MarcRecord, position: int, offset: int | None, raw: bytes,
            raw_format: str) -> ImportItem:
    try:
        return Imported(_map(profile, record, raw, raw_format), position, offset)
    except MappingError as e:
        return Rejected(position, offset, str(e), _control_of(record))
    except Exception as e:  # a mapping bug must not stop a million-record import; report it per record
        log.exception("mapping record %s failed", position)
        return Rejected(position, offset, f"could not map the record: {type(e).__name__}: {e}", _control_of(record))


def _control_of(record: Record | MarcRecord) -> str | None:
    f = record.get("001")
    return f.data if f is not None and f.data else None


# --------------------------------------------------------------------------------------------------
# Reading MARCXML

class _XmlCollector:
    """expat handlers that collect one MARCXML record at a time (namespaced or not)."""

    def __init__(self, parser: Any) -> None:
        self.parser = parser
        self.done: list[tuple[int, Record | str]] = []
        self.record_start: int | None = None
        self.leader: str | None = None
        self.fields: list[Field] = []
        self.text: list[str] = []
        self.current: dict[str, Any] | None = None
        self.sub_code: str | None = None
        self.problem: str | None = None
        self.control_tag: str | None = None

    @staticmethod
    def _local(name: str) -> str:
        return name.rsplit("|", 1)[-1]

    def start(self, name: str, attrs: dict[str, str]) -> None:
        local = self._local(name)
        if local == "record":
            self.record_start = self.parser.CurrentByteIndex
            self.leader, self.fields, self.current, self.problem = None, [], None, None
        elif self.record_start is None:
            return
        elif local == "leader":
            self.text = []
        elif local == "controlfield":
            self.control_tag, self.text = attrs.get("tag", ""), []
        elif local == "datafield":
            self.current = {"tag": attrs.get("tag", ""), "ind1": attrs.get("ind1", " ") or " ",
                            "ind2": attrs.get("ind2", " ") or " ", "subfields": []}
        elif local == "subfield":
            self.sub_code, self.text = attrs.get("code", ""), []

    def chars(self, data: str) -> None:
        self.text.append(data)

    def end(self, name: str) -> None:
        local = self._local(name)
        if self.record_start is None:
            return
        if local == "leader":
            self.leader = "".join(self.text)
        elif local == "controlfield":
            tag = self.control_tag or ""
            if not _TAG_RE.match(tag):
                self.problem = self.problem or f"controlfield with a bad tag {tag!r}"
            self.fields.append(Field(tag=tag, data="".join(self.text)))
            self.control_tag = None
        elif local == "subfield" and self.current is not None:
            code = self.sub_code or ""
            if len(code) != 1:
                self.problem = self.problem or f"field {self.current['tag']} has a subfield with code {code!r}"
            self.current["subfields"].append(Subfield(code=code, value="".join(self.text)))
        elif local == "datafield" and self.current is not None:
            c = self.current
            if not _TAG_RE.match(c["tag"]):
                self.problem = self.problem or f"datafield with a bad tag {c['tag']!r}"
            self.fields.append(Field(tag=c["tag"], indicators=Indicators(c["ind1"], c["ind2"]),
                                       subfields=c["subfields"]))
            self.current = None
        elif local == "record":
            start = self.record_start
            self.record_start = None
            self.done.append((start, self._finish()))
        self.text = []

    def _finish(self) -> Record | str:
        if self.problem:
            return self.problem
        if self.leader is None:
            return "the record has no leader"
        if len(self.leader) != 24:
            return f"bad leader: {len(self.leader)} characters, expected 24"
        if not self.fields:
            return "the record has no fields"
        record = Record(leader=self.leader, force_utf8=True)
        record.fields = list(self.fields)
        return record


def _read_xml(path_or_stream: str | Path | IO[bytes], profile: Profile) -> Iterator[ImportItem]:
    stream, owned = _open(path_or_stream)
    parser = expat.ParserCreate(namespace_separator="|")
    collector = _XmlCollector(parser)
    parser.StartElementHandler = collector.start
    parser.EndElementHandler = collector.end
    parser.CharacterDataHandler = collector.chars
    parser.buffer_text = True
    position = 0
    content = False
    try:
        while True:
            block = stream.read(_BLOCK)
            if not content:
                if not block:
                    return  # empty (or whitespace-only) file: no records
                if not block.removeprefix(b"\xef\xbb\xbf").strip():
                    continue
                content = True
            try:
                parser.Parse(block, not block)
            except expat.ExpatError as e:
                for start, item in collector.done:
                    position += 1
                    yield _xml_item(profile, item, position, start)
                collector.done.clear()
                yield Rejected(position + 1, collector.record_start,
                               f"the XML is not well-formed at line {e.lineno}, column {e.offset}: "
                               f"{expat.ErrorString(e.code)}; reading stops here")
                return
            for start, item in collector.done:
                position += 1
                yield _xml_item(profile, item, position, start)
            collector.done.clear()
            if not block:
                return
    finally:
        if owned:
            stream.close()


def _xml_item(profile: Profile, item: Record | str, position: int, offset: int) -> ImportItem:
    if isinstance(item, str):
        return Rejected(position, offset, item)
    raw = record_to_xml(item, namespace=True)
    return _mapped(profile, item, position, offset, raw, "marcxml")


# --------------------------------------------------------------------------------------------------


def detect_format(path_or_head: str | Path | bytes) -> str:
    """'iso2709', 'marcxml', 'empty' or 'unknown', from the first bytes of a file (or the bytes given)."""
    if isinstance(path_or_head, bytes):
        head = path_or_head[:4096]
    else:
        with open(path_or_head, "rb") as f:
            head = f.read(4096)
    stripped = head.removeprefix(b"\xef\xbb\xbf").lstrip(b"\r\n\t \x00")
    if not stripped:
        return "empty"
    if stripped[:1] == b"<":
        lowered = stripped[:4096].lower()
        return "marcxml" if b"record" in lowered or b"collection" in lowered else "unknown"
    if len(stripped) >= 24 and stripped[:5].isdigit() and stripped[12:17].isdigit():
        return "iso2709"
    return "unknown"
