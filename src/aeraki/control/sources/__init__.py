"""Config sources: raw resource events from a watched directory or the Kubernetes API.

The API types and the file source are re-exported here; the Kubernetes pieces
(``kubernetes.KubernetesSource``, ``kubeclient.KubeClient``, ``leader.LeaderElector``) are
imported from their modules, so standalone use does not load the HTTP client.
"""

from aeraki.control.sources.api import (
    DEFAULT_KINDS,
    ConfigSource,
    EventType,
    ProblemCallback,
    ResourceEvent,
    ResourceKey,
    ResourceStore,
    WatchedKind,
)
from aeraki.control.sources.files import FileSource, parse_manifests

__all__ = [
    "DEFAULT_KINDS",
    "ConfigSource",
    "EventType",
    "FileSource",
    "ProblemCallback",
    "ResourceEvent",
    "ResourceKey",
    "ResourceStore",
    "WatchedKind",
    "parse_manifests",
]
