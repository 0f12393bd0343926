"""Write rendered EnvoyFilters to the API server the way Aeraki does (reference §5.6).

One pass: list every EnvoyFilter labelled ``manager=Aeraki`` (all namespaces, paged), then
(1) delete those not desired, (2) update those whose ``spec`` differs (with the listed
``resourceVersion``, so a concurrent writer gets 409 instead of being overwritten),
(3) create the rest. Objects without the label — a user's own EnvoyFilters — are never touched,
even when the server ignores the label selector (the list is filtered again here). Writes use
field manager ``Aeraki``, as Aeraki's do, so ``kubectl`` shows the same owner after a switch.

Fixed against the reference (§5.6): every failed call is reported with its object and reason
and the other calls still run (Aeraki kept only the last error); a 404 on delete means the
object is already gone, not a failure. A pass with nothing to change makes no write.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aeraki.control.envoyfilter.render import API_VERSION, MANAGER_LABEL
from aeraki.control.sources.kubeclient import ApiError, KubeClient

__all__ = ["FIELD_MANAGER", "ReconcileResult", "list_managed", "reconcile"]

FIELD_MANAGER = "Aeraki"
_COLLECTION = f"/apis/{API_VERSION}/envoyfilters"
_PAGE = 500

JsonDict = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)


@dataclass(slots=True)
class ReconcileResult:
    """What one pass did, as ``namespace/name`` lists (sorted), and the calls that failed."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return len(self.created) + len(self.updated) + len(self.deleted)

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.deleted)} deleted, {len(self.unchanged)} unchanged, "
            f"{len(self.errors)} failed"
        )


def _key(obj: JsonDict) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def _text(key: Key) -> str:
    return f"{key[0]}/{key[1]}"


def _managed(obj: JsonDict) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(MANAGER_LABEL[0]) == MANAGER_LABEL[1])


def _object_path(key: Key) -> str:
    return f"/apis/{API_VERSION}/namespaces/{key[0]}/envoyfilters/{key[1]}"


async def list_managed(client: KubeClient) -> dict[Key, JsonDict]:
    """Every EnvoyFilter labelled ``manager=Aeraki``, in all namespaces."""
    out: dict[Key, JsonDict] = {}
    params = {"labelSelector": "=".join(MANAGER_LABEL), "limit": str(_PAGE)}
    while True:
        page = await client.request("GET", _COLLECTION, params=params)
        for item in page.get("items") or []:
            if _managed(item):
                out[_key(item)] = item
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return out
        params = {**params, "continue": str(token)}


def _needs_update(current: JsonDict, wanted: JsonDict) -> bool:
    labels = (current.get("metadata") or {}).get("labels") or {}
    missing = any(labels.get(k) != v for k, v in wanted["metadata"]["labels"].items())
    return missing or current.get("spec") != wanted.get("spec")


def _update_body(current: JsonDict, wanted: JsonDict) -> JsonDict:
    """The desired object carrying the current ``resourceVersion`` and labels/annotations
    others added (ours win on conflict)."""
    body = copy.deepcopy(wanted)
    meta, old = body["metadata"], current.get("metadata") or {}
    meta["resourceVersion"] = old.get("resourceVersion", "")
    meta["labels"] = {**(old.get("labels") or {}), **meta.get("labels", {})}
    if old.get("annotations") or meta.get("annotations"):
        meta["annotations"] = {**(old.get("annotations") or {}), **meta.get("annotations", {})}
    return body


async def reconcile(client: KubeClient, desired: Sequence[JsonDict]) -> ReconcileResult:
    """Make the ``manager=Aeraki`` EnvoyFilters on the server exactly ``desired``.

    Args:
        client: API server client with list/create/update/delete on envoyfilters.
        desired: rendered objects (:func:`~.render.render_envoyfilters`); each must carry the
            ``manager: Aeraki`` label, or the next pass could not find it to clean it up.

    Returns:
        What was done; never raises for a failed call (see ``errors``) except on the list.

    Raises:
        ApiError: listing failed (nothing was written).
        ValueError: a desired object lacks the label.
    """
    wanted: dict[Key, JsonDict] = {}
    for obj in desired:
        if not _managed(obj):
            raise ValueError(f"EnvoyFilter {_text(_key(obj))} lacks label manager: Aeraki")
        wanted[_key(obj)] = obj
    existing = await list_managed(client)
    result = ReconcileResult()
    write = {"fieldManager": FIELD_MANAGER}
    for key in sorted(existing.keys() - wanted.keys()):
        try:
            await client.request("DELETE", _object_path(key))
        except ApiError as exc:
            if exc.status != 404:
                result.errors.append(f"delete {_text(key)}: {exc}")
                continue
        result.deleted.append(_text(key))
    for key in sorted(existing.keys() & wanted.keys()):
        if not _needs_update(existing[key], wanted[key]):
            result.unchanged.append(_text(key))
            continue
        body = _update_body(existing[key], wanted[key])
        try:
            await client.request("PUT", _object_path(key), params=write, body=body)
        except ApiError as exc:
            result.errors.append(f"update {_text(key)}: {exc}")
            continue
        result.updated.append(_text(key))
    for key in sorted(wanted.keys() - existing.keys()):
        path = f"/apis/{API_VERSION}/namespaces/{key[0]}/envoyfilters"
        try:
            await client.request("POST", path, params=write, body=copy.deepcopy(wanted[key]))
        except ApiError as exc:
            result.errors.append(f"create {_text(key)}: {exc}")
            continue
        result.created.append(_text(key))
    return result
