"""通知メール (email notices): queued with the event that causes them, sent by a worker exactly once."""

from api.notices.service import KINDS, SendReport, list_notices, queue_notice, retry, send_due

__all__ = ["KINDS", "SendReport", "list_notices", "queue_notice", "retry", "send_due"]
