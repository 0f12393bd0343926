"""The admin HTTP server: plain and coroutine pages and actions over a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aeraki.admin_http import AdminHttpServer, Response
from aeraki.proxy.workers_admin import fetch


async def test_sync_and_async_pages_and_actions() -> None:
    async def slow_page() -> Response:
        await asyncio.sleep(0)  # answers only after yielding to the loop
        return 200, "text/plain", "later\n"

    async def act(query: Mapping[str, str]) -> Response:
        await asyncio.sleep(0)
        return 200, "text/plain", f"level={query['level']}\n"

    server = AdminHttpServer(
        {"/now": lambda: (200, "text/plain", "now\n"), "/later": slow_page}, {"/logging": act}
    )
    await server.start("127.0.0.1", 0)
    try:
        assert await fetch(server.port, "/now") == (200, "now\n")
        assert await fetch(server.port, "/later") == (200, "later\n")
        assert await fetch(server.port, "/logging?level=debug", "POST") == (200, "level=debug\n")
        status, body = await fetch(server.port, "/nope")
        assert status == 404
        assert "/later /now" in body
    finally:
        server.close()
