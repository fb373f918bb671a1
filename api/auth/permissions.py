"""Areas and actions, and what a signed-in staff member may do. Pure: no database access."""

from __future__ import annotations

from dataclasses import dataclass, field

from api.errors import invalid

AREAS: tuple[str, ...] = ("catalogue", "circulation", "patrons", "statistics", "system")
ACTIONS: tuple[str, ...] = ("view", "update", "print", "export", "administer")

AREA_LABELS = {
    "catalogue": ("資料", "Catalogue"),
    "circulation": ("貸出・返却", "Circulation"),
    "patrons": ("利用者", "Patrons"),
    "statistics": ("統計", "Statistics"),
    "system": ("システム", "System"),
}
ACTION_LABELS = {
    "view": ("閲覧", "View"),
    "update": ("更新", "Update"),
    "print": ("印刷", "Print"),
    "export": ("出力", "Export"),
    "administer": ("管理", "Administer"),
}

Permission = tuple[str, str]


def parse_permission(text: str) -> Permission:
    """'circulation:update' → ('circulation', 'update'); raises ValueError naming the bad part."""
    area, sep, action = text.strip().partition(":")
    if not sep or area not in AREAS:
        raise ValueError(f"unknown area {area!r} (expected one of {', '.join(AREAS)})")
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r} (expected one of {', '.join(ACTIONS)})")
    return area, action


def parse_permissions(texts: list[str], field_name: str = "permissions") -> list[Permission]:
    """Parse 'area:action' strings; a bad one raises validation_error naming the field and value."""
    parsed = []
    for text in texts:
        try:
            parsed.append(parse_permission(text))
        except ValueError as exc:
            raise invalid(field_name, text, "「業務:操作」の形で指定してください。", str(exc)) from None
    return parsed


@dataclass(frozen=True)
class Principal:
    """A signed-in staff member and the union of what their roles and groups grant."""

    account_id: int
    username: str
    display_name: str
    branch_code: str | None
    roles: tuple[str, ...]
    groups: tuple[str, ...]
    permissions: frozenset[Permission] = field(default_factory=frozenset)

    def can(self, area: str, action: str) -> bool:
        return (area, action) in self.permissions

    @property
    def is_admin(self) -> bool:
        """Only administrators manage accounts and grants."""
        return self.can("system", "administer")
