"""操作ログ (audit log): who did what, when and from where; append-only and hash-chained."""

from api.audit.service import Actor, record

__all__ = ["Actor", "record"]
