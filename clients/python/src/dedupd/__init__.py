"""dedupd: claim a message id before acting on it, so that its effect happens once.

    with dedupd.Client("http://dedupd:8080", token) as client:
        with client.claim("orders", message_id) as claim:
            if claim.acquired:
                claim.complete(charge(order))
            else:
                print("already done:", claim.result)

See the package README for the protocol rules the client follows.
"""

from . import errors
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
from .errors import *  # noqa: F403 (every error is part of the API: errors.__all__ names them)

__all__ = [
    "Acquired",
    "AsyncClaim",
    "AsyncClient",
    "Claim",
    "ClaimAnswer",
    "ClaimInfo",
    "Client",
    "Duplicate",
    "Transition",
    "__version__",
    "holder_label",
    "new_claimant",
]
__all__ += errors.__all__
