"""The exceptions the client raises.

Every exception derives from :class:`DedupdError`. None of them ever holds
the bearer token: the client never puts it in a message, and the texts the
server or httpx give are scrubbed of it before they are stored.
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = [
    "AlreadyCompleted",
    "BadRequest",
    "DedupdError",
    "FingerprintMismatch",
    "Forbidden",
    "LeaseLost",
    "NotFound",
    "NotOwner",
    "PayloadTooLarge",
    "ProblemError",
    "ServerError",
    "StillInProgress",
    "TransitionRefused",
    "Unauthorized",
    "Unavailable",
    "UnreleasedClaimWarning",
    "UnsupportedMediaType",
]


class DedupdError(Exception):
    """Base class of every error this package raises."""


class ProblemError(DedupdError):
    """The service refused the request with an RFC 9457 problem (a 4xx, or a 500).

    ``type`` is the problem's ``urn:dedupd:problem:…`` name, ``title`` and
    ``detail`` its human texts, ``status`` the HTTP status. Never retried:
    the same request would be refused again.
    """

    def __init__(
        self,
        status: int,
        type: str,
        title: str,
        detail: str,
    ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        super().__init__(status, type, title, detail)

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.detail} ({self.type})"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, type={self.type!r}, "
            f"title={self.title!r}, detail={self.detail!r})"
        )


class BadRequest(ProblemError):
    """400: the request is malformed (a bad key, namespace, option or body)."""


class Unauthorized(ProblemError):
    """401: no valid bearer token."""


class Forbidden(ProblemError):
    """403: the bearer token may not use this namespace."""


class NotFound(ProblemError):
    """404: no live claim for this key (never claimed, released, or expired)."""


class PayloadTooLarge(ProblemError):
    """413: the body or the result is too large (result ≤ 16 KiB of JSON)."""


class UnsupportedMediaType(ProblemError):
    """415: the body is not JSON (a bug of this client if it ever happens)."""


class FingerprintMismatch(ProblemError):
    """422: the key was claimed with a different fingerprint.

    The message id was reused for another payload: a producer bug, alert on it.
    """


class ServerError(ProblemError):
    """A 5xx other than 502/503/504: the service failed to handle the request."""


class Unavailable(DedupdError):
    """The service could not give an answer within the retry budget.

    Raised after 503 answers (overloaded, not ready, outcome not decided,
    store refused, too many waiters) or transport failures (connection
    refused, timeout, connection closed before the answer) kept coming for
    ``retry_budget_secs``. The claim's outcome is unknown: retry it later
    with the same ``claimant`` (:attr:`claimant`) to recover a claim that was
    in fact granted. Never a duplicate.
    """

    def __init__(
        self,
        message: str,
        *,
        attempts: int,
        claimant: Optional[str] = None,
        problem_type: Optional[str] = None,
        detail: Optional[str] = None,
    ) -> None:
        self.attempts = attempts
        self.claimant = claimant
        self.problem_type = problem_type
        self.detail = detail
        super().__init__(message)

    def __repr__(self) -> str:
        return f"Unavailable({str(self)!r}, attempts={self.attempts!r}, problem_type={self.problem_type!r})"


class TransitionRefused(DedupdError):
    """409 on complete, release or extend: the token may not make this transition."""

    def __init__(self, outcome: str, detail: str, body: Optional[dict[str, Any]] = None) -> None:
        self.outcome = outcome
        self.detail = detail
        self.body = body or {}
        super().__init__(f"{outcome}: {detail}")


class NotOwner(TransitionRefused):
    """409 ``not_owner``: the token no longer owns the claim (taken over after its lease, or released)."""


class AlreadyCompleted(TransitionRefused):
    """409 ``already_completed``: the claim is completed; it can no longer be released or extended."""


class LeaseLost(DedupdError):
    """The claim's lease passed to another claimant while this one held it.

    Raised by ``claim.complete(...)`` when a background extension heard
    ``not_owner`` or 404, or when the completion itself did. The work done
    under the lost claim may be done again by the new owner.
    """


class StillInProgress(DedupdError):
    """An ``@idempotent`` caller waited its whole budget and the first run is still going.

    Nothing was run by this caller. Try again later (for a message: do not
    acknowledge it, let it be redelivered).
    """

    def __init__(self, message: str, *, namespace: str, key: str) -> None:
        self.namespace = namespace
        self.key = key
        super().__init__(message)


class UnreleasedClaimWarning(UserWarning):
    """A ``claim(...)`` block was left while owning the claim without completing it; it was released."""
