"""English translations: every message in the templates has an English text in api/locale/en.po,
placeholders survive translation, and the Jinja2 environments switch language."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from api.web import LOCALE_DIR, Templates, translations
from staff.routes import SECTIONS

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DIRS = ("staff/templates", "opac/templates")
PLACEHOLDER = re.compile(r"%\((\w+)\)[sdifr]")


def _extract() -> dict[str, list[str]]:
    """msgid → where it is used, extracted with the same mapping as `pybabel extract -F babel.cfg`."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as fh:
        method_map, options_map = parse_mapping_cfg(fh, "babel.cfg")
    found: dict[str, list[str]] = {}
    for folder in TEMPLATE_DIRS:
        for filename, lineno, message, _comments, _context in extract_from_dir(
                ROOT / folder, method_map, options_map):
            ids = message if isinstance(message, tuple) else (message,)  # plural forms give a tuple
            for msgid in ids:
                if msgid:
                    found.setdefault(msgid, []).append(f"{folder}/{filename}:{lineno}")
    return found


@pytest.fixture(scope="module")
def messages() -> dict[str, list[str]]:
    return _extract()


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    with (LOCALE_DIR / "en.po").open("rb") as fh:
        return read_po(fh, locale="en", abort_invalid=True)


def _english(catalog: Catalog, msgid: str) -> str:
    """The English text the app will use: fuzzy entries are left out when the PO file is compiled."""
    entry = catalog.get(msgid)
    if entry is None or entry.fuzzy:
        return ""
    text = entry.string
    if not isinstance(text, str):  # a plural entry: its first form
        text = text[0] if text else ""
    return text.strip()


def test_extraction_finds_the_templates(messages: dict[str, list[str]]) -> None:
    assert len(messages) > 50, "babel.cfg no longer matches the templates"
    for folder in TEMPLATE_DIRS:
        assert any(where.startswith(folder) for places in messages.values() for where in places), folder


def test_po_header(catalog: Catalog) -> None:
    assert str(catalog.locale) == "en"
    assert catalog.charset.lower() == "utf-8"
    assert catalog.num_plurals == 2


def test_every_template_message_has_english(messages: dict[str, list[str]], catalog: Catalog) -> None:
    missing = {msgid: places for msgid, places in messages.items() if not _english(catalog, msgid)}
    assert not missing, "untranslated in api/locale/en.po (add msgid/msgstr pairs):\n" + "\n".join(
        f"  {msgid!r}  ({', '.join(places)})" for msgid, places in missing.items())


def test_placeholders_survive_translation(messages: dict[str, list[str]], catalog: Catalog) -> None:
    ids = set(messages) | {str(m.id) for m in catalog if m.id and isinstance(m.id, str)}
    wrong = {}
    for msgid in sorted(ids):
        english = _english(catalog, msgid)
        if english and Counter(PLACEHOLDER.findall(msgid)) != Counter(PLACEHOLDER.findall(english)):
            wrong[msgid] = english
    assert not wrong, "placeholders differ between msgid and translation:\n" + "\n".join(
        f"  {k!r} → {v!r}" for k, v in wrong.items())


def test_section_titles_have_english(catalog: Catalog) -> None:
    titles = [title for _area, title in SECTIONS.values()]
    missing = [title for title in titles if not _english(catalog, title)]
    assert not missing, f"SECTIONS titles without English in api/locale/en.po: {missing}"
    assert translations("en").gettext("貸出・返却") == "Circulation"


@pytest.fixture(scope="module")
def staff_templates() -> Templates:
    return Templates([ROOT / "staff" / "templates"], {"library_name": "テスト市立図書館"})


def _render_login(templates: Templates, lang: str) -> str:
    return templates.env(lang).get_template("login.html").render(
        request=None, next="/", login_csrf="token", username="", error="", expired=True)


def test_login_page_in_english(staff_templates: Templates) -> None:
    html = _render_login(staff_templates, "en")
    assert '<html lang="en">' in html
    assert "Sign in" in html
    assert "Staff sign-in" in html
    assert "Your session has expired." in html
    assert "ログイン" not in html


def test_login_page_in_japanese(staff_templates: Templates) -> None:
    html = _render_login(staff_templates, "ja")
    assert '<html lang="ja">' in html
    assert "ログイン" in html
    assert "職員ログイン" in html
    assert "Sign in" not in html


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_section_page_title_is_translated(staff_templates: Templates, lang: str) -> None:
    template = staff_templates.env(lang).get_template("section.html")
    for _area, title in SECTIONS.values():
        html = template.render(request=None, title=title, section="x")
        expected = title if lang == "ja" else translations("en").gettext(title)
        assert f"<h1>{expected}</h1>" in html
