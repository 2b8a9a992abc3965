"""Hide secrets (URL passwords, values of secret-named keys) in values and in message text."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MASK", "SECRET_KEY", "mask", "mask_text"]

#: What a hidden secret is replaced with, everywhere the kit shows a value.
MASK = "********"

#: Key names whose values are secrets: ``password``, ``sasl_token``, ``basic_auth``,
#: ``aws_secret_access_key``, ``credentials`` … (matched anywhere in the name).
SECRET_KEY = re.compile(r"pass|secret|token|credential|auth", re.IGNORECASE)

#: ``scheme://user:password@`` (``rediss``, ``amqp``, ``db+postgresql``, ``sqs://KEY:SECRET@``).
#: The password runs to the last ``@`` of the token, so an unencoded ``@`` in it stays hidden.
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][\w+.\-]*://[^\s:/@'\"`]*):(?P<secret>[^\s'\"`]*)@")

#: ``password = 'x'``, ``password=x``, ``"sasl_token": "x"``, ``flower.basic_auth=[...]`` in a
#: message (after ``:`` only a quoted or bracketed value, so prose like ``auth: export`` stays).
_KEY_VALUE = re.compile(
    r"(?P<head>[\w.\-\[\]'\"`]*(?:pass|secret|token|credential|auth)[\w.\-'\"`\]]*"
    r"(?:\s*=\s*|\s*:\s*(?=['\"\[{])))"
    r"(?P<value>'[^']*'|\"[^\"]*\"|\[[^\]]*\]|\{[^}]*\}|[^\s,;)}\]]+)",
    re.IGNORECASE,
)


def _url_password(match: re.Match[str]) -> str:
    return f"{match['head']}:{MASK}@" if match["secret"] else match[0]


def _key_value(match: re.Match[str]) -> str:
    value = match["value"]
    if value in ("''", '""', "None", "False", "[]", "{}") or value.startswith("`"):
        return match[0]
    if value.startswith("//") or value == MASK:  # the `:` of a URL, or already masked
        return match[0]
    return f"{match['head']}{MASK}"


def mask_text(text: str) -> str:
    """``text`` with every URL password and every ``secret_key = value`` value hidden.

    Applied to every :class:`~celery_kit.exceptions.CeleryKitError` message, so a value
    shown in an error can never leak a credential, whichever refusal path produced it.
    """
    text = _URL_PASSWORD.sub(_url_password, text)
    return _KEY_VALUE.sub(_key_value, text)


def mask(value: Any, *, key: str = "") -> Any:
    """``value`` with secrets hidden, recursively: URL passwords and secret-named keys.

    Args:
        value: a setting value (dicts and lists are walked).
        key: the name the value is stored under; a secret-looking name hides the value.
    """
    if isinstance(value, dict):
        return {k: mask(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask(v, key=key) for v in value)
    if key and SECRET_KEY.search(key) and value not in (None, "", False):
        return MASK
    if isinstance(value, str):
        return _URL_PASSWORD.sub(_url_password, value)
    return value
