"""Errors with a stable code for the API and a message for people, in Japanese and English."""

from __future__ import annotations


class ShokaError(Exception):
    """A refusal the caller can act on. `code` is stable; the messages may be reworded."""

    status = 400

    def __init__(self, code: str, message_ja: str, message_en: str, *, status: int | None = None,
                 field: str | None = None) -> None:
        super().__init__(message_en)
        self.code = code
        self.message_ja = message_ja
        self.message_en = message_en
        self.field = field
        if status is not None:
            self.status = status

    def message(self, lang: str) -> str:
        return self.message_en if lang == "en" else self.message_ja

    def body(self, lang: str) -> dict[str, dict[str, str]]:
        error = {"code": self.code, "message": self.message(lang)}
        if self.field:
            error["field"] = self.field
        return {"error": error}


def invalid(field: str, value: object, ja: str, en: str) -> ShokaError:
    """A bad value in a named field: the message names both."""
    shown = repr(value) if not isinstance(value, str) else f"「{value}」"
    return ShokaError("validation_error", f"{field}: {shown} — {ja}", f"{field}: {value!r} — {en}",
                      status=422, field=field)


def not_found(kind: str, ident: str) -> ShokaError:
    return ShokaError("not_found", f"{kind}「{ident}」は見つかりません。", f"No {kind} {ident!r}.", status=404)


def forbidden(area: str, action: str) -> ShokaError:
    return ShokaError("forbidden", f"この操作の権限がありません（{area}:{action}）。",
                      f"You do not have permission for this ({area}:{action}).", status=403)
