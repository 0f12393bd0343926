"""`make demo`: Thrift and Dubbo traffic through one Aeraki proxy, with live routing results.

Modules: :mod:`.layout` (reads ``bootstrap.yaml``: ports, backends, routes), :mod:`.processes`
(children started, watched and stopped by PID), :mod:`.dubbo_client` (a minimal Dubbo consumer),
:mod:`.client` (the live client and display), :mod:`.launcher` (the orchestrator; also
``python -m examples.demo``).
"""
