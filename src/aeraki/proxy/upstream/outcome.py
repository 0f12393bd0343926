"""What happened to one request on one host, as outlier detection and health see it.

The request path reports every attempt's outcome to its host (``Host.report``); a cluster
with outlier detection installs a monitor on its hosts, everyone else pays one attribute
test. The outcomes follow Envoy's split between errors the upstream returned (its
"gateway"/external errors) and failures that originated locally (connect failure, reset,
timeout), so ``split_external_local_origin_errors`` can be honoured.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from aeraki.proxy.upstream.host import Host

__all__ = ["Outcome", "OutcomeMonitor"]


class Outcome(enum.Enum):
    """The result of one attempt on one host."""

    #: a response with an OK status.
    SUCCESS = "success"
    #: a response whose status says the call failed (Dubbo non-OK status, Thrift exception).
    ERROR_RESPONSE = "error_response"
    #: a response the codec could not read, or one for another request.
    BAD_RESPONSE = "bad_response"
    #: no connection could be made (refused, unreachable, connect timeout).
    CONNECT_FAILURE = "connect_failure"
    #: the connection closed or reset while the request was outstanding.
    RESET = "reset"
    #: no answer within the route's (per-try) timeout.
    TIMEOUT = "timeout"

    @property
    def is_failure(self) -> bool:
        """Every outcome but SUCCESS counts against the host."""
        return self is not Outcome.SUCCESS

    @property
    def is_local_origin(self) -> bool:
        """Failures the proxy observed itself rather than errors the upstream returned."""
        return self in _LOCAL_ORIGIN


_LOCAL_ORIGIN = frozenset({Outcome.CONNECT_FAILURE, Outcome.RESET, Outcome.TIMEOUT})


class OutcomeMonitor(Protocol):
    """Receives every outcome of the hosts it watches (outlier detection)."""

    def report(self, host: Host, outcome: Outcome) -> None:
        """Account one outcome of ``host``; may eject it (``host.healthy = False``)."""
