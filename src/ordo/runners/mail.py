"""Mail through SMTP: plain, STARTTLS (port 587, when the server offers it) or SSL (port
465), with a login when a user and password are given. Errors are returned, not raised:
a report that cannot be sent must never change what the run did."""

from __future__ import annotations

import mimetypes
import os
import smtplib
import ssl
from email.message import EmailMessage

from msgspec import Struct

TIMEOUT = 30.0


class Letter(Struct, frozen=True):
    subject: str
    body: str
    to: tuple[str, ...]
    sender: str
    attachments: tuple[str, ...] = ()  # file paths


def message(letter: Letter) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = letter.subject
    msg["From"] = letter.sender
    msg["To"] = ", ".join(letter.to)
    msg.set_content(letter.body)
    for path in letter.attachments:
        kind, _ = mimetypes.guess_type(path)
        main, sub = (kind or "text/plain").split("/", 1)
        with open(path, "rb") as f:
            data = f.read()
        msg.add_attachment(data, maintype=main, subtype=sub, filename=os.path.basename(path))
    return msg


def send(letter: Letter, server: str, port: int, user: str = "", password: str = "") -> str | None:
    """Send ``letter``; None when sent, else what went wrong."""
    try:
        msg = message(letter)
        if port == 465:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                server, port, timeout=TIMEOUT, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(server, port, timeout=TIMEOUT)
        with smtp:
            if port != 465:
                smtp.ehlo()
                if smtp.has_extn("starttls"):
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
            if user and password:
                smtp.login(user, password)
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None
