"""dedupd: claim a message id before acting on it, so that its effect happens once.

    with dedupd.Client("http://dedupd:8080", token) as client:
        with client.claim("orders", message_id) as claim:
            if claim.acquired:
                claim.complete(charge(order))
            else:
                print("already done:", claim.result)

See the package README for the protocol rules the client follows.
"""

from ._async import AsyncClaim, AsyncClient
from ._protocol import (
    Acquired,
    ClaimAnswer,
    ClaimInfo,
    Duplicate,
    Transition,
    __version__,
    holder_label,
    new_claimant,
)
from ._sync import Claim, Client
from .errors import (
    AlreadyCompleted,
    BadRequest,
    DedupdError,
    FingerprintMismatch,
    Forbidden,
    LeaseLost,
    NotFound,
    NotOwner,
    PayloadTooLarge,
    ProblemError,
    ServerError,
    StillInProgress,
    TransitionRefused,
    Unauthorized,
    Unavailable,
    UnreleasedClaimWarning,
    UnsupportedMediaType,
)

__all__ = [
    "Acquired",
    "AlreadyCompleted",
    "AsyncClaim",
    "AsyncClient",
    "BadRequest",
    "Claim",
    "ClaimAnswer",
    "ClaimInfo",
    "Client",
    "DedupdError",
    "Duplicate",
    "FingerprintMismatch",
    "Forbidden",
    "LeaseLost",
    "NotFound",
    "NotOwner",
    "PayloadTooLarge",
    "ProblemError",
    "ServerError",
    "StillInProgress",
    "Transition",
    "TransitionRefused",
    "Unauthorized",
    "Unavailable",
    "UnreleasedClaimWarning",
    "UnsupportedMediaType",
    "__version__",
    "holder_label",
    "new_claimant",
]
