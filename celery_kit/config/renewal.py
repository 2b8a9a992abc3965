"""The visibility timeout under the kit's transport: a few renewal intervals, not a budget.

With kombu's transport a late-ack message must stay invisible for as long as it may wait
and run (time limit x prefetch + longest countdown + margin: 1,500 s by default). The
kit's transport renews every message a worker holds — prefetched, waiting for its ETA or
countdown, running — so the timeout only has to outlast a few missed renewals, and a
whole-worker crash is recovered in about a minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from celery_kit.exceptions import ConfigError

if TYPE_CHECKING:
    from celery_kit.config.settings import Settings

__all__ = [
    "MIN_RENEWALS_PER_TIMEOUT",
    "RENEWALS_PER_TIMEOUT",
    "RenewalBudget",
    "check_tls",
    "kit_visibility_timeout",
    "renewal_budget",
]

#: Default visibility timeout = this many renewal intervals (3 renewals may be missed,
#: e.g. Redis away for 45 s with the 15 s default, before a held message is restored).
RENEWALS_PER_TIMEOUT = 4
#: A chosen timeout below this many renewal intervals is refused: one late renewal would
#: hand a running task to a second worker.
MIN_RENEWALS_PER_TIMEOUT = 2


@dataclass(frozen=True)
class RenewalBudget:
    """How the kit transport's visibility timeout follows from the renewal interval."""

    renewal_interval_s: float
    restore_interval_s: float

    @property
    def default_timeout_s(self) -> float:
        """The derived visibility timeout."""
        return self.renewal_interval_s * RENEWALS_PER_TIMEOUT

    @property
    def min_timeout_s(self) -> float:
        """The shortest visibility timeout accepted."""
        return self.renewal_interval_s * MIN_RENEWALS_PER_TIMEOUT

    def recovery_s(self, timeout_s: float) -> float:
        """Worst case until a crashed worker's messages are back in their queues."""
        return timeout_s + self.restore_interval_s

    def explain(self, timeout_s: float) -> str:
        """For ``kit config`` and error messages."""
        return (
            f"visibility timeout {timeout_s:g} s ({RENEWALS_PER_TIMEOUT} x"
            f" {self.renewal_interval_s:g} s renewal interval by default); the kit transport"
            " renews every message a worker holds (prefetched, waiting for its countdown/ETA,"
            f" running), so a crashed worker's messages return within about"
            f" {self.recovery_s(timeout_s):g} s whatever the time limits"
        )


def renewal_budget(settings: Settings) -> RenewalBudget:
    """The renewal arithmetic of ``settings`` (kit transport)."""
    return RenewalBudget(settings.broker.renewal_interval_s, settings.broker.restore_interval_s)


def kit_visibility_timeout(settings: Settings, given: float | None) -> float:
    """The visibility timeout under the kit transport: ``given`` if safe, else derived.

    Raises:
        ConfigError: ``given`` is below two renewal intervals.
    """
    budget = renewal_budget(settings)
    if given is not None and float(given) < budget.min_timeout_s:
        raise ConfigError(
            f"broker.visibility_timeout_s = {float(given):g} s is too short for a renewal"
            f" every {budget.renewal_interval_s:g} s (broker.renewal_interval_s): one late"
            " renewal would hand a running task to a second worker. Remove the setting to"
            f" let the kit derive it ({budget.default_timeout_s:g} s), or raise it to at"
            f" least {budget.min_timeout_s:g} s, or lower broker.renewal_interval_s."
        )
    return float(given) if given is not None else budget.default_timeout_s


def check_tls(settings: Settings, *, tls_configured: bool) -> None:
    """A ``rediss://`` broker must say how to check the certificate (kombu would silently
    fall back to no check for its own transport, and the kit's gets no TLS at all).

    Raises:
        ConfigError: neither the URL nor an override configures TLS.
    """
    url = settings.broker_url.split(";")[0]
    if (
        settings.broker_scheme == "rediss"
        and "ssl_cert_reqs" not in parse_qs(urlsplit(url).query)
        and not tls_configured
    ):
        raise ConfigError(
            "a rediss:// broker needs ?ssl_cert_reqs=required (or optional/none) in"
            " broker_url, or celery_overrides.broker_use_ssl, so the kit's transport knows"
            ' how to check the server certificate (or set broker.transport = "kombu")'
        )
