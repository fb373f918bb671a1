"""Japanese text analysis for search: the one pipeline applied identically at index time and at query time.

Every engine (tantivy, OpenSearch) receives the tokens made here, so both see exactly the same terms; the
engines themselves only split on whitespace. Pure functions: no database, no engine.

Pipeline
--------
``normalize(text)``
    1. Unicode NFKC: full-width ASCII → ASCII, half-width katakana → katakana, ㈱ → (株), CJK compatibility
       ideographs → unified ideographs, U+3000 → space.
    2. lowercase.
    3. 旧字体/異体字 → 新字体 with our own table (:mod:`indexer.kyujitai`; Sudachi alone reads 圖書館 as ズショカン).
    4. Long vowel and dashes. The strokes people type for ー in kana words (－ ‐ ‑ −, half-width ｰ, ー itself):
       a run of them right after a kana is one ``ー`` (コ－ヒ－, コ‐ヒ‐, こーーひー → コーヒー, こーひー), unless a
       typed stroke is followed by a digit or Latin letter (あ－22 is a number range); anywhere else they are
       ``-``. Separator dashes (ASCII -, ‒ – — ― ─ ━) are always ``-``, so スピーチ-次世代 keeps its separator and
       ISBN 4-00-310101-4 its hyphens (the ISBN code strips them itself).
    5. Wave dashes 〜 ～ ∼ 〰 → ``~``.
    6. Middle dots (・ ･ · ‧ ∙ ⋅) and the katakana double hyphen ゠ are word separators: they become a space, so
       ニュース・リスニング, ニュース･リスニング and ニュース リスニング analyse alike (and their readings, whose spaces
       are not significant, equal ニュースリスニング's).
    7. Control and zero-width characters are dropped; whitespace runs become one space; ends are stripped.

``analyze(text)``: Sudachi (core dictionary, pinned) split mode C over the normalized text. For each token that
is not whitespace or symbols only: ``units_c`` gets its ``normalized_form()`` passed through ``normalize`` again
(ヴァイオリン → バイオリン, Mac → mac); ``units_a`` gets the mode-A sub-units of the same token, so
図書館情報学 is one C unit and 図書/館/情報/学 as A units (``Morpheme.split(A)`` over the C lattice gives exactly
what a mode-A tokenizer gives, at half the cost); the token's reading is Sudachi's ``reading_form()`` for
Japanese tokens, and the normalized surface for Latin/digit tokens and for tokens whose reading is unknown
(OOV kanji, for which Sudachi echoes the surface).

Readings follow NDL's cataloguing convention (checked on the 880 ``$1`` fields of the shared JAPAN/MARC file):
the particles は, へ, を are written as pronounced, ワ, エ, オ (シュッパンシャ ワ ドウ ツクリ; ハナシ オ シヨウ). The
generated reading does the same, from Sudachi's part of speech, so generated and NDL readings agree.

Reading-level folding (:func:`fold_reading`), applied to generated readings, to NDL/TRC readings at index time,
and to kana queries:

* hiragana → katakana; NFKC (half-width kana); lowercase Latin.
* ヴァ ヴィ ヴ ヴェ ヴォ ヴュ → バ ビ ブ ベ ボ ビュ; ヷ ヸ ヹ ヺ → バ ビ ベ ボ.
* small kana → large: ァィゥェォ ッ ャュョ ヮ ヵヶ → アイウエオ ツ ヤユヨ ワ カケ. Older JAPAN/MARC and many
  library readings write 拗音/促音 with full-size kana (シユツパン); folding makes them meet modern readings.
  Cost: ビョウイン (病院) and ビヨウイン (美容院) share a reading key; the unit fields still tell them apart.
* ヲ → オ (modern ヲ is only the particle, which NDL writes オ), ヂ → ジ, ヅ → ズ (現代仮名遣い, as NDL), ヰ → イ,
  ヱ → エ (Aozora's old kana: ヰタ・セクスアリス).
* the long-vowel mark ー is removed everywhere (コンピューター = コンピュータ = コンピュタ; ビール = ビル in the
  reading key, accepted: the reading fields are for recall, the unit fields for precision).
* ヽ ヾ (and ゝ ゞ) repeat the previous kana (いすゞ → イスズ).
* anything that is not a letter or digit becomes a space; spaces are kept single (they separate 姓 and 名) but
  are never significant for matching: ``reading_bigrams`` are taken with spaces removed.
* ハ/ワ and ヘ/エ are NOT folded as characters: ハ is one of the commonest kana (ハナシ, ハル, ハンバイ) and
  folding it into ワ would merge many unrelated readings. Instead the particles are written ワ/エ when a reading
  is generated (above). The one case left unmatched is a kana query that types the particle as written
  (しゅっぱんしゃは…): all its reading bigrams except the one or two touching は still match.

Stored readings (NDL 880 ``$1``, TRC, Aozora 作品名読み, or ``reading_of`` output) are indexed through
``fold_reading`` and ``reading_bigrams(fold_reading(r))``, not through ``analyze_query``: a reading that contains
Latin or digits (スグ ツカエル Mac & Office) is not kana-only and would be re-read by Sudachi.

``analyze_query(text)``: the same pipeline. If the normalized query is kana only (hiragana, katakana, ー, spaces),
its reading is the folded query itself rather than Sudachi's reading of it, so a hiragana query is compared with
katakana readings letter for letter (Sudachi would re-read ずしょかん as ず+しょ+かん, a grammar guess).

Thread safety: a SudachiPy ``Tokenizer`` must not be used by two threads at once (it raises SudachiError). The
``Dictionary`` (the memory-mapped core dictionary) is created once per process under a lock and shared; each
thread lazily gets its own ``Tokenizer`` from a ``threading.local``.

Speed: ``normalize`` is NFKC + ``str.translate`` with a table built once + a regex only where dashes occur;
per-token work is memoised (normalized forms, folded readings, POS ids), one mode-C tokenization serves both
unit fields, and the tokenizer loads only the dictionary fields used here. Measured on one core (SudachiPy 0.7.0,
core 20261015): ~30,000 analyze()/s on the 15,226 Aozora titles, ~11,500/s on the longer NDL titles (245 $a$b$n$p),
~5,700 NDL records/s with all of title, subtitle, authors, corporate names, series, subjects and publisher.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import threading
import unicodedata
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from operator import add
from typing import Any

from indexer.kyujitai import KYUJITAI

__all__ = [
    "ANALYZER_VERSION",
    "Analysis",
    "analyze",
    "analyze_query",
    "fold_reading",
    "is_kana_only",
    "normalize",
    "reading_bigrams",
    "reading_of",
    "to_katakana",
]

SUDACHI_DICT = "core"
"""The Sudachi system dictionary, pinned (its package version is part of ANALYZER_VERSION)."""

# Bump RULES_VERSION whenever normalize/fold/analyze change behaviour; the dictionary, SudachiPy and the
# kyujitai table are versioned automatically below. 2: the A fields hold the C units that split, too.
RULES_VERSION = "2"


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def _kyujitai_digest() -> str:
    text = "".join(f"{old}{new}" for old, new in sorted(KYUJITAI.items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


ANALYZER_VERSION: str = (
    f"ja-{RULES_VERSION}"
    f"+sudachipy-{_package_version('sudachipy')}"
    f"+sudachidict-{SUDACHI_DICT}-{_package_version('sudachidict-core')}"
    f"+kyujitai-{_kyujitai_digest()}"
)
"""Stored with the index; a different value means the index must be rebuilt."""


# --------------------------------------------------------------------------------------------- normalize

# Strokes that are typed for the long-vowel mark in kana words (コ－ヒ－, コ‐ヒ‐, コ−ヒ−, half-width ｰ): marked
# before NFKC (which would turn － into an ASCII "-" and lose the distinction), then decided by context.
_LONG_VOWEL_LIKE = "\uff0d\u2010\u2011\u2212"  # － ‐ ‑ −  (ー itself, and half-width ｰ via NFKC, are ー already)
_LV = "\ue000"  # private-use marker, left alone by NFKC
# Dashes that are separators, never long vowels (スピーチ-次世代, 作品――副題): always "-".
_DASHES = "‒–—―─━﹣"
_WAVES = "〜～∼〰"
_DOTS = "・･·‧∙⋅゠"
_DROP = "\u00ad\u200b\u200c\u200d\u2060\ufeff"


def _build_table() -> dict[int, str | None]:
    table: dict[int, str | None] = {ord(old): new for old, new in KYUJITAI.items()}
    table.update({ord(c): "-" for c in _DASHES})
    table.update({ord(c): "~" for c in _WAVES})
    table.update({ord(c): " " for c in _DOTS})
    table.update({ord(c): None for c in _DROP})
    table.update({i: " " for i in (*range(0x00, 0x20), 0x7F)})
    return table


_NORMALIZE_TABLE = _build_table()  # built once: str.translate with a ready dict is C speed
_KANA_CHARS = "ぁ-ゖゝゞァ-ヺヽヾ"
# Only the runs that need a decision: not after a kana, containing a marked stroke, or repeated (ーー).
_LV_RUN = re.compile(f"(?<![{_KANA_CHARS}])[{_LV}ー]+|[{_LV}ー]*{_LV}[{_LV}ー]*|ーー+")
_PRE_NFKC = str.maketrans(dict.fromkeys(_LONG_VOWEL_LIKE, _LV))
_IS_KANA = re.compile(f"[{_KANA_CHARS}]")
_ALNUM_ASCII = re.compile("[0-9a-z]")


def _long_vowel_run(m: re.Match[str]) -> str:
    text = m.string
    start, end = m.span()
    if start == 0 or _IS_KANA.match(text, start - 1) is None:
        return "-"
    if "ー" in m.group() or end == len(text) or _ALNUM_ASCII.match(text, end) is None:
        return "ー"
    return "-"  # あ－22: a hyphen before a number, not a long vowel


def normalize(text: str) -> str:
    """NFKC, lowercase, 旧字体 → 新字体, dash/long-vowel, wave-dash, middle-dot and space folding."""
    if not text:
        return ""
    s = unicodedata.normalize("NFKC", text.translate(_PRE_NFKC)).lower().translate(_NORMALIZE_TABLE)
    if _LV in s or "ー" in s:
        s = _LV_RUN.sub(_long_vowel_run, s)
    return " ".join(s.split())


# --------------------------------------------------------------------------------------------- kana

_HIRA_TO_KATA = {c: c + 0x60 for c in range(ord("ぁ"), ord("ゖ") + 1)}
_HIRA_TO_KATA.update({ord("ゝ"): ord("ヽ"), ord("ゞ"): ord("ヾ")})  # ゔ (U+3094) → ヴ is in the range


def to_katakana(text: str) -> str:
    """Hiragana → katakana (ぁ–ゖ incl. ゔ→ヴ, ゝゞ→ヽヾ); every other character is left as it is."""
    return text.translate(_HIRA_TO_KATA)


_KANA_ONLY = re.compile(f"[{_KANA_CHARS}ー ]+")


def is_kana_only(normalized: str) -> bool:
    """True if ``normalized`` (output of :func:`normalize`) has at least one kana and nothing but kana, ー, spaces."""
    return bool(normalized) and _KANA_ONLY.fullmatch(normalized) is not None and _IS_KANA.search(normalized) is not None


_VU = (("ヴァ", "バ"), ("ヴィ", "ビ"), ("ヴゥ", "ブ"), ("ヴェ", "ベ"), ("ヴォ", "ボ"), ("ヴュ", "ビュ"), ("ヴ", "ブ"))
_FOLD_TABLE: dict[int, str | None] = {
    ord(a): b
    for a, b in zip(
        "ァィゥェォッャュョヮヵヶヲヂヅヰヱヷヸヹヺㇰㇱㇲㇳㇴㇵㇶㇷㇸㇹㇺㇻㇼㇽㇾㇿ",
        "アイウエオツヤユヨワカケオジズイエバビベボクシストヌハヒフヘホムラリルレロ",
        strict=True,
    )
}
_FOLD_TABLE[ord("ー")] = None
_NON_WORD = re.compile(r"[\W_]+")
_VOICED = {c: unicodedata.normalize("NFC", c + "\u3099") for c in "カキクケコサシスセソタチツテトハヒフヘホウ"}


def _repeat_marks(s: str) -> str:
    out: list[str] = []
    for ch in s:
        if ch == "ヽ" and out:
            ch = out[-1]
        elif ch == "ヾ" and out:
            ch = _VOICED.get(out[-1], out[-1])
        out.append(ch)
    return "".join(out)


@lru_cache(maxsize=131072)
def _fold(s: str) -> str:
    """Fold already-normalized text (see module docstring); the memoised core of fold_reading."""
    s = to_katakana(s)
    if "ヽ" in s or "ヾ" in s:
        s = _repeat_marks(s)
    if "ヴ" in s:
        for old, new in _VU:
            s = s.replace(old, new)
    s = s.translate(_FOLD_TABLE)
    s = _NON_WORD.sub(" ", s)
    return " ".join(s.split())


def fold_reading(text: str) -> str:
    """Fold a reading (katakana or hiragana, NDL/TRC or generated) or a kana query to the reading key."""
    return _fold(normalize(text)) if text else ""


def char_bigrams(s: str) -> list[str]:
    """Each pair of neighbouring characters of `s`; a one-character string gives itself."""
    return list(map(add, s, s[1:])) if len(s) > 1 else [s] if s else []


def reading_bigrams(reading: str) -> list[str]:
    """Character bigrams of a folded reading, spaces removed; a one-character reading gives itself."""
    return char_bigrams(reading.replace(" ", ""))


# --------------------------------------------------------------------------------------------- Sudachi

_FIELDS = {"pos", "normalized_form", "reading_form", "split_a"}
_dictionary: Any = None
_dictionary_lock = threading.Lock()
_local = threading.local()


def _tokenizer() -> Any:
    """This thread's mode-C tokenizer over the process-wide core dictionary (created on first use)."""
    tok = getattr(_local, "tokenizer", None)
    if tok is None:
        global _dictionary
        from sudachipy import Dictionary, SplitMode

        with _dictionary_lock:
            if _dictionary is None:
                _dictionary = Dictionary(dict=SUDACHI_DICT)
            tok = _dictionary.tokenizer(SplitMode.C, fields=_FIELDS)
        _local.tokenizer = tok
        _local.mode_a = SplitMode.A
    return tok


# Sudachi refuses input over 49,149 UTF-8 bytes; 4,000 characters is at most 16,000 bytes even for non-BMP text.
_CHUNK = 4000
_BREAK = re.compile(r"[\s。、．，!?！？」』)\]]")


def _chunks(s: str) -> list[str]:
    if len(s) <= _CHUNK:
        return [s]
    out = []
    while len(s) > _CHUNK:
        cut = _CHUNK
        for m in _BREAK.finditer(s, _CHUNK // 2, _CHUNK):
            cut = m.end()
        out.append(s[:cut])
        s = s[cut:]
    if s:
        out.append(s)
    return out


_WORD = re.compile(r"[^\W_]")
_JAPANESE = re.compile(f"[{_KANA_CHARS}ー々〆\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff]")
_KATAKANA_READING = re.compile("[ァ-ヺー]+")
_POS_CACHE: dict[int, tuple[str, str]] = {}
_PARTICLE_READING = {"は": "ワ", "へ": "エ", "を": "オ"}  # NDL writes particles as pronounced
# Where Sudachi's preferred reading differs from NDL's cataloguing practice: NDL reads 日本 ニホン unless the
# item itself says ニッポン (日本の大事な話 → ニホン ノ ダイジナ ハナシ); Sudachi's core dictionary says ニッポン.
_READING_OVERRIDES = {"日本": "ニホン", "日本一": "ニホンイチ"}
_ASCII_DIGIT = re.compile("[0-9]")


@lru_cache(maxsize=131072)
def _unit(form: str) -> str:
    return normalize(form)


def _is_word(surface: str) -> bool:
    return _WORD.search(surface) is not None


def _token_reading(m: Any, surface: str, pos0: str, pos1: str) -> str:
    if pos0 == "助詞" and surface in _PARTICLE_READING:
        return _PARTICLE_READING[surface]
    if surface in _READING_OVERRIDES:
        return _READING_OVERRIDES[surface]
    if _JAPANESE.search(surface) is None:  # Latin, digits, other scripts: keep the normalized surface
        return surface
    if pos1 == "数詞" and _ASCII_DIGIT.search(surface):  # 1000万: Sudachi reads it digit by digit (イチレイレイレイ)
        return surface
    reading: str = m.reading_form()
    if _KATAKANA_READING.fullmatch(reading) is None:  # unknown (OOV kanji echo their surface)
        return surface
    return reading


def _pos(m: Any) -> tuple[str, str]:
    pid: int = m.part_of_speech_id()
    pos = _POS_CACHE.get(pid)
    if pos is None:
        p = m.part_of_speech()
        pos = _POS_CACHE[pid] = (p[0], p[1])
    return pos


@dataclass(frozen=True)
class Analysis:
    """What one text contributes to the index (or asks of it, for a query)."""

    normalized: str = ""
    """``normalize(text)``."""
    units_c: list[str] = field(default_factory=list)
    """Sudachi mode C units, normalized forms, symbols dropped."""
    units_a: list[str] = field(default_factory=list)
    """Sudachi mode A units of the same tokens."""
    whole_units: list[bool] = field(default_factory=list)
    """Per mode C unit: True when it is its own mode A unit (it does not split), so a text that has it as a
    C unit has it among its A units too."""
    reading_tokens: list[str] = field(default_factory=list)
    """Folded reading per mode C unit."""
    generated_reading: str = ""
    """Unfolded katakana reading in NDL style (particles ワ/エ/オ, small kana and ー kept): what reading_of returns."""
    given_reading: str | None = None
    """The folded reading to use instead of the generated one's (a kana query's own letters)."""

    # Computed when first asked for: a record whose text has a catalogued reading is indexed by that one, so
    # a rebuild would fold and split the generated reading of most titles for nothing.
    @cached_property
    def reading(self) -> str:
        """Folded katakana reading of the whole text (spaces where the text separated words)."""
        return _fold(self.generated_reading) if self.given_reading is None else self.given_reading

    @cached_property
    def reading_bigrams(self) -> list[str]:
        """Character bigrams of ``reading`` with spaces removed."""
        return reading_bigrams(self.reading)


_EMPTY = Analysis()


# (mode C unit, its mode A units, whether those are the C unit alone, reading, folded reading) of a word; () for
# a space or a symbol
_Morpheme = tuple[str, tuple[str, ...], bool, str, str] | tuple[()]
# What a dictionary word contributes depends only on the word and its surface: remembered for the first
# MORPHEME_CACHE of them (common words come early), which saves a rebuild most of its per-token Python.
# Unknown words (OOV) are not remembered: their part of speech comes from the context.
MORPHEME_CACHE = 100_000
_morphemes: dict[tuple[int, str], _Morpheme] = {}


def _morpheme(m: Any, surface: str, mode_a: Any) -> _Morpheme:
    pos0, pos1 = _pos(m)
    if pos0 == "空白" or not _is_word(surface):
        return ()
    unit = _unit(m.normalized_form())
    subs = m.split(mode_a, add_single=False)  # empty when the C unit is already an A unit
    units_a = (unit,) if len(subs) < 2 else tuple(_unit(s.normalized_form()) for s in subs if _is_word(s.surface()))
    r = _token_reading(m, surface, pos0, pos1)
    return unit, units_a, units_a == (unit,), r, _fold(r)


def _run(normalized: str) -> Analysis:
    tok = _tokenizer()
    mode_a = _local.mode_a
    known = _morphemes
    units_c: list[str] = []
    units_a: list[str] = []
    whole: list[bool] = []
    raw: list[str] = []  # unfolded readings and " " separators
    folded: list[str] = []  # folded reading per C unit
    for chunk in _chunks(normalized):
        for m in tok.tokenize(chunk):
            surface: str = m.surface()
            key = (m.word_id(), surface)
            word = known.get(key)
            if word is None:
                word = _morpheme(m, surface, mode_a)
                if len(known) < MORPHEME_CACHE and not m.is_oov():
                    known[key] = word
            if not word:
                if raw and raw[-1] != " ":
                    raw.append(" ")
                continue
            unit, subunits, is_whole, r, f = word
            units_c.append(unit)
            units_a += subunits
            whole.append(is_whole)
            raw.append(r)
            if f:
                folded.append(f)
    return Analysis(normalized, units_c, units_a, whole, folded, "".join(raw).strip())


def analyze(text: str) -> Analysis:
    """Analyse a field value for indexing (title, author, publisher, subject, series …)."""
    normalized = normalize(text)
    if not normalized:
        return _EMPTY
    return _run(normalized)


def analyze_query(text: str) -> Analysis:
    """Analyse a query: as :func:`analyze`, but a kana-only query's reading is the query itself, folded."""
    normalized = normalize(text)
    if not normalized:
        return _EMPTY
    result = _run(normalized)
    if not is_kana_only(normalized):
        return result
    reading = _fold(normalized)
    return Analysis(normalized, result.units_c, result.units_a, result.whole_units, reading.split(),
                    to_katakana(normalized), reading)


def reading_of(text: str) -> str:
    """The generated katakana reading of a title, name, publisher or subject that has none.

    NDL style: particles は/へ/を as ワ/エ/オ, small kana and ー kept, Latin and digits as written (normalized),
    punctuation dropped; whitespace (and the comma of a ``姓, 名`` heading) becomes one space, so ``夏目 漱石``
    reads ``ナツメ ソウセキ``. The importer stores it marked as generated; index it through :func:`fold_reading`.
    """
    return analyze(text).generated_reading
