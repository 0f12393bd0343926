"""`make demo`: Thrift and Dubbo traffic through ``aeraki run`` while a MetaRouter changes.

Modules: :mod:`.layout` (reads ``manifests/`` and ``phases/``: ports, backends, routing phases),
:mod:`.processes` (children started, watched and stopped by PID), :mod:`.dubbo_client` (a
minimal Dubbo consumer), :mod:`.client` (the traffic on connections held open),
:mod:`.runstatus` (follows ``aeraki run``'s status view in its log), :mod:`.scenario` (writes
the phases, the live view and the summary), :mod:`.launcher` (the orchestrator; also
``python -m examples.demo``).
"""
