"""``aeraki explain``: why a request goes where it goes (issue 5, item 5).

:mod:`.view` loads a proxy's configuration (bootstrap, manifests, running proxy),
:mod:`.request` turns a captured frame or attributes into the request's metadata,
:mod:`.trace` follows it with the proxy's own routing and balancing code, :mod:`.render`
prints the result for a terminal or as JSON, :mod:`.cli` is the command.
"""
