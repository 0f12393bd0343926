"""The control plane: Aeraki and Istio resources in, xDS out (issue 3).

Layout (DESIGN §2): ``model/`` holds the typed resources and their per-resource rules,
``manifests.py`` reads YAML into raw documents with line numbers, ``validation.py`` turns
them into a :class:`~aeraki.control.model.ConfigSnapshot` with every problem reported.
Nothing here imports asyncio, grpc or socket; the servers live in their own modules.
"""
