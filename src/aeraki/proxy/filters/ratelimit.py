"""Global rate limit (``aeraki.meta_protocol.filters.ratelimit``, reference §22.3).

A matching request pauses while an Envoy rate limit service (RLS v3,
``envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit``) decides: ``OVER_LIMIT``
gets a local OverLimit reply in the request's protocol; any other answer resumes the request.
A failed call (service unreachable, error status, no answer within ``timeout``) denies the
request when ``failure_mode_deny`` is set and lets it through otherwise.

The request sent is the reference's: ``domain``, and one descriptor per configured entry with
the single entry ``(descriptor_key, value of the request property)`` (missing property ⇒
``""``); ``hits_addend`` unset (the service counts 1).

Defects of the reference fixed here (§33 item 5):

* the call is asynchronous — the worker never blocks; other requests, even on the same
  connection, go on while one waits — on one reused gRPC channel per service host, instead of
  a blocking call on a new channel per request;
* the configured ``timeout`` is the call's deadline (default 20 ms), instead of no deadline;
* an empty ``match`` matches every request (as the proto says), instead of none;
* the service's cluster is looked up only for matching requests, and a missing cluster or
  host is a failed call (``failure_mode_deny`` decides), not an unconditional error reply.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from envoy.config.core.v3 import config_source_pb2
from envoy.service.ratelimit.v3 import rls_pb2

from aeraki.codec.api import ErrorType
from aeraki.errors import ConfigError
from aeraki.proxy.bootstrap_problems import Problems, duration_seconds, join
from aeraki.proxy.filters.api import ClusterRefs, FilterStatus, register_filter
from aeraki.proxy.filters.common import (
    Match,
    match_tests,
    problem_list,
    request_strings,
    shared_state,
)
from aeraki.proxy.stats import RateLimitStats

if TYPE_CHECKING:
    import grpc.aio

    from aeraki.proxy.listener import ListenerRuntime
    from aeraki.proxy.request import ActiveRequest
    from aeraki.proxy.upstream.host import Host

__all__ = [
    "DEFAULT_TIMEOUT",
    "NAME",
    "RateLimitFilter",
    "RateLimitSettings",
    "RlsClient",
    "check_config",
    "compile_settings",
    "rls_request",
]

log = logging.getLogger(__name__)

NAME = "aeraki.meta_protocol.filters.ratelimit"
#: Where the filter's counters appear under the listener's stat prefix (Envoy's name).
STAT_PREFIX = "ratelimit"
#: Seconds an RLS call may take when the config sets no ``timeout`` (the proto's default).
DEFAULT_TIMEOUT = 0.020
METHOD = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"

_OVER_LIMIT = rls_pb2.RateLimitResponse.OVER_LIMIT


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """A checked ``RateLimit`` config."""

    domain: str
    cluster: str
    timeout: float
    failure_mode_deny: bool
    #: (descriptor key, request property lower-cased), in order.
    descriptors: tuple[tuple[str, str], ...]
    match: Match


def rls_request(settings: RateLimitSettings, strings: dict[str, str]) -> rls_pb2.RateLimitRequest:
    """The ``ShouldRateLimit`` request for a request with metadata ``strings``: ``domain``,
    then one descriptor per configured entry, ``(descriptor_key, property value)`` (a missing
    property is ``""``). Pure: the filter sends it, ``aeraki explain`` shows it."""
    message = rls_pb2.RateLimitRequest(domain=settings.domain)
    for key, prop in settings.descriptors:
        message.descriptors.add().entries.add(key=key, value=strings.get(prop, ""))
    return message


class RlsClient:
    """Channels to the service's hosts and the counters: one per filter config, shared by all
    connections of the listener (and kept across a listener update that keeps the config)."""

    __slots__ = ("__weakref__", "calls", "settings", "stats", "tasks")

    def __init__(self, settings: RateLimitSettings) -> None:
        self.settings = settings
        self.stats = RateLimitStats()
        #: host key -> the ShouldRateLimit callable on that host's channel.
        self.calls: dict[str, grpc.aio.UnaryUnaryMultiCallable[Any, Any]] = {}
        #: calls in flight (a task must be referenced until it is done).
        self.tasks: set[asyncio.Task[None]] = set()

    def call_for(self, host: Host, hosts: list[Host]) -> grpc.aio.UnaryUnaryMultiCallable[Any, Any]:
        """The RPC on ``host``'s channel, opened on first use; channels of hosts no longer in
        ``hosts`` are dropped then (a dropped channel closes when its last call ends)."""
        call = self.calls.get(host.key)
        if call is None:
            import grpc.aio  # here: only proxies that use the filter load grpc

            live = {h.key for h in hosts}
            for key in [k for k in self.calls if k not in live]:
                del self.calls[key]
            channel = grpc.aio.insecure_channel(host.key)
            call = channel.unary_unary(
                METHOD,
                request_serializer=rls_pb2.RateLimitRequest.SerializeToString,
                response_deserializer=rls_pb2.RateLimitResponse.FromString,
            )
            self.calls[host.key] = call
        return call


class RateLimitFilter:
    """The decoder filter: asks the service, pauses the request until it answers."""

    __slots__ = ("client", "settings", "stats")

    def __init__(self, client: RlsClient) -> None:
        self.client = client
        self.settings = client.settings
        self.stats = client.stats

    def on_request(self, request: ActiveRequest) -> FilterStatus:
        settings = self.settings
        metadata = request.metadata
        match = settings.match
        if match.tests:
            strings = request_strings(metadata, match.names)
            for test in match.tests:
                if not test(strings):
                    return FilterStatus.CONTINUE
        cluster = request.downstream.listener.clusters.get(settings.cluster)
        host = cluster.lb.choose(None) if cluster is not None else None
        if cluster is None or host is None:
            what = "unknown cluster" if cluster is None else "no host in cluster"
            return self._failed(request, f"{what} '{settings.cluster}'")
        strings = request_strings(metadata, (prop for _, prop in settings.descriptors))
        message = rls_request(settings, strings)
        rpc = self.client.call_for(host, cluster.hosts)
        task = asyncio.get_running_loop().create_task(self._ask(request, rpc, message))
        self.client.tasks.add(task)
        task.add_done_callback(self.client.tasks.discard)
        return FilterStatus.PAUSE

    async def _ask(
        self,
        request: ActiveRequest,
        rpc: grpc.aio.UnaryUnaryMultiCallable[Any, Any],
        message: rls_pb2.RateLimitRequest,
    ) -> None:
        try:
            response = await rpc(message, timeout=self.settings.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failed call is a failure of the service
            detail = getattr(exc, "code", None)
            status = detail() if callable(detail) else type(exc).__name__
            if self._failed(request, f"call failed: {status}") is FilterStatus.CONTINUE:
                request.resume_decoding()
            return
        if response.overall_code == _OVER_LIMIT:
            self.stats.over_limit += 1
            request.local_reply(
                ErrorType.OVER_LIMIT,
                f"meta protocol global ratelimit: request '{request.metadata.request_id}' "
                "has been rate limited",
            )
            return
        self.stats.ok += 1
        if not request.is_done:  # the client may have gone away meanwhile
            request.resume_decoding()

    def _failed(self, request: ActiveRequest, reason: str) -> FilterStatus:
        """A call that could not be made or failed: deny or allow per ``failure_mode_deny``."""
        self.stats.error += 1
        log.debug("rate limit service (%s): %s", self.settings.cluster, reason)
        if not self.settings.failure_mode_deny:
            self.stats.failure_mode_allowed += 1
            return FilterStatus.CONTINUE
        request.local_reply(
            ErrorType.OVER_LIMIT,
            f"meta protocol global ratelimit: rate limit service failed ({reason}) for request "
            f"'{request.metadata.request_id}' and failure_mode_deny is set",
        )
        return FilterStatus.STOP


# -- config -----------------------------------------------------------------------------------
def _compile(config: Any, path: str, problems: Problems, refs: ClusterRefs) -> RateLimitSettings:
    match = match_tests(config.match, join(path, "match"), problems)
    if not config.domain:
        problems.add(join(path, "domain"), "required")
    if not config.descriptors:
        problems.add(join(path, "descriptors"), "at least one descriptor is required")
    descriptors: list[tuple[str, str]] = []
    for i, d in enumerate(config.descriptors):
        d_path = join(path, f"descriptors[{i}]")
        for field in ("property", "descriptor_key"):
            if not getattr(d, field):
                problems.add(join(d_path, field), "required")
        descriptors.append((d.descriptor_key, d.property.lower()))
    timeout = DEFAULT_TIMEOUT
    if config.HasField("timeout"):
        timeout = duration_seconds(config.timeout)
        if timeout <= 0:
            problems.add(
                join(path, "timeout"), f"must be positive (omit it for 20ms), got {timeout}s"
            )
    service = config.rate_limit_service
    s_path = join(path, "rate_limit_service")
    cluster = service.grpc_service.envoy_grpc.cluster_name
    if not cluster:
        problems.add(join(s_path, "grpc_service.envoy_grpc.cluster_name"), "required")
    else:
        refs.append((join(s_path, "grpc_service.envoy_grpc.cluster_name"), cluster))
    if service.transport_api_version not in (config_source_pb2.AUTO, config_source_pb2.V3):
        problems.add(join(s_path, "transport_api_version"), "only V3 is supported")
    return RateLimitSettings(
        domain=config.domain,
        cluster=cluster,
        timeout=timeout,
        failure_mode_deny=config.failure_mode_deny,
        descriptors=tuple(descriptors),
        match=match,
    )


def check_config(config: Any, path: str, refs: ClusterRefs) -> list[ConfigError]:
    """Every problem of a ``RateLimit`` config (:data:`~.api.FilterCheck`)."""
    problems = Problems(NAME)
    _compile(config, path, problems, refs)
    return problem_list(problems)


def compile_settings(config: Any) -> RateLimitSettings:
    """Checked settings of a ``RateLimit`` config.

    Raises:
        ConfigErrors: the config is invalid (already reported by :func:`check_config` when
            it came through the bootstrap or xDS).
    """
    problems = Problems(NAME)
    settings = _compile(config, "config", problems, [])
    problems.raise_if_any()
    return settings


def _factory(config: Any, listener: ListenerRuntime) -> RateLimitFilter:
    client = shared_state(listener, NAME, config, lambda: RlsClient(compile_settings(config)))
    listener.stats.filter_stats[STAT_PREFIX] = client.stats
    return RateLimitFilter(client)


register_filter(NAME, _factory, check_config)
