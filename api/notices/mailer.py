"""Sending one message over SMTP (smtplib), and telling a temporary failure from a permanent one."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from typing import Protocol

from api.config import Settings


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Hand the message to the mail server; raise MailError when it was not accepted."""


class MailError(Exception):
    """The server did not take the message. `permanent`: do not try again (5xx, e.g. 550 for a bouncing
    address). `server_problem`: the server or its configuration failed, not this message, so the sender
    stops its batch instead of trying every other notice against the same failure."""

    def __init__(self, reply: str, *, permanent: bool, server_problem: bool = False) -> None:
        super().__init__(reply)
        self.reply = reply
        self.permanent = permanent
        self.server_problem = server_problem


def _reply(code: int, text: bytes | str) -> str:
    message = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(message.split())}"


def classify(exc: Exception) -> MailError:
    """An smtplib or socket failure as a MailError (pure)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(exc.recipients.values()), (451, b"recipient refused"))
        return MailError(_reply(code, text), permanent=code >= 500)
    if isinstance(exc, smtplib.SMTPAuthenticationError | smtplib.SMTPSenderRefused | smtplib.SMTPHeloError
                  | smtplib.SMTPConnectError):
        # Our login, our From address or the server itself: no notice is at fault.
        return MailError(_reply(exc.smtp_code, exc.smtp_error), permanent=False, server_problem=True)
    if isinstance(exc, smtplib.SMTPResponseException):
        return MailError(_reply(exc.smtp_code, exc.smtp_error), permanent=exc.smtp_code >= 500)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return MailError(f"SMTP server does not support this: {exc}", permanent=False, server_problem=True)
    if isinstance(exc, ssl.SSLError):
        return MailError(f"TLS: {exc}", permanent=False, server_problem=True)
    if isinstance(exc, smtplib.SMTPServerDisconnected | OSError):  # refused, unreachable, timed out
        return MailError(f"SMTP server unavailable: {exc.__class__.__name__}: {exc}", permanent=False,
                         server_problem=True)
    return MailError(f"{exc.__class__.__name__}: {exc}", permanent=False)


class SmtpMailer:
    """One connection per message: SMTP_TLS `starttls` (587), `ssl` (465) or `none` (25); login when
    SMTP_USER is set."""

    def __init__(self, settings: Settings, *, timeout: float = 30.0) -> None:
        if settings.smtp_host is None:
            raise ValueError("SMTP_HOST is not set: mail is disabled")
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.tls = settings.smtp_tls
        self.user = settings.smtp_user
        self.password = settings.smtp_password or ""
        self.timeout = timeout

    def send(self, message: EmailMessage) -> None:
        client: smtplib.SMTP | None = None
        try:
            if self.tls == "ssl":
                client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                          context=ssl.create_default_context())
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                if self.tls == "starttls":
                    client.starttls(context=ssl.create_default_context())
            if self.user:
                client.login(self.user, self.password)
            client.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            if client is not None:
                client.close()
            raise classify(exc) from exc
        # Accepted. A failure to say goodbye must not look like a failed send (that would send twice).
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()
