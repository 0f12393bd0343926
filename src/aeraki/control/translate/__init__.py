"""Translation: the typed resource model → xDS resources for one node (issue 3, item 4).

Pure functions (no I/O, asyncio or grpc): :func:`translate` takes a
:class:`~aeraki.control.model.ConfigSnapshot`, the asking node and options, and returns the
node's listeners, clusters, cluster load assignments and route configurations, in a
deterministic order, with the problems found. Per MetaProtocol service port
(``tcp-metaprotocol-<protocol>-…``; ``tcp-dubbo…``/``tcp-thrift…`` use the built-in dubbo/thrift
codecs) it emits, following reference §6 with the §16 quirks fixed:

- an outbound listener ``<address>_<port>`` with the ``aeraki.meta_protocol_proxy`` filter,
  routes over ADS named ``<host>_<port>`` (§6.1);
- the route configuration ``<host>_<port>`` in the HTTP RDS carrier form (§6.8–§6.9) from the
  MetaRouter, or the default route to ``outbound|<port>||<host>`` (Aeraki's own MetaProtocol
  form, for our proxy, when a route uses the timeout/retries/fault extension);
- clusters ``outbound|<port>|<subset>|<host>`` with their endpoints from the ServiceEntry and
  the load balancer of the DestinationRule;
- inbound listeners and ``inbound|<port>||`` clusters when the node is the server sidecar (§6.2).

Node metadata and scoping rules: :mod:`.api` and :mod:`.translate`; incremental translation
(reusing what unchanged resources produced last time): :mod:`.memo`.
"""

from aeraki.control.translate.api import NodeInfo, TranslateOptions, Translation
from aeraki.control.translate.memo import TranslationMemo
from aeraki.control.translate.translate import translate

__all__ = ["NodeInfo", "TranslateOptions", "Translation", "TranslationMemo", "translate"]
