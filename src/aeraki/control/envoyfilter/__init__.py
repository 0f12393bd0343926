"""Istio output: the EnvoyFilters Aeraki applies to Istio sidecars (issue 3 item 8, reference §5).

:func:`render_envoyfilters` (pure) turns a config snapshot into EnvoyFilter objects;
:mod:`.reconcile` writes them to an API server (create, update, delete stale ones labelled
``manager: Aeraki``); :mod:`.cli` is ``aeraki envoyfilter DIR``.
"""

from aeraki.control.envoyfilter.mesh import MeshConfig, parse_mesh_config
from aeraki.control.envoyfilter.render import RenderResult, render_envoyfilters

__all__ = ["MeshConfig", "RenderResult", "parse_mesh_config", "render_envoyfilters"]
