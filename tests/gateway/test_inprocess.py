"""`ApimGateway` used as a library (as a demo launcher or another test suite may), in one event loop."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from yarl import URL

from gateway import ApimGateway, build_profile, resolve_backend
from tests.gateway.backend import make_app


async def test_gateway_in_process() -> None:
    runner = web.AppRunner(make_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    backend = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        model = resolve_backend(build_profile("websocket"), backend)
        async with ApimGateway(model, port=0) as gateway:
            assert gateway.url == f"http://127.0.0.1:{gateway.port}" and gateway.port > 0
            async with aiohttp.ClientSession() as http:
                target = URL(gateway.url + "/client/negotiate?hub=chat&asrs.op=%2Fchat", encoded=True)
                async with http.post(target) as response:
                    seen = await response.json()
                assert (seen["path"], seen["query"]) == ("/client/negotiate/", "hub=chat&asrs.op=%2Fchat")
                async with http.ws_connect(gateway.url + "/client/?id=1") as ws:
                    hello = await ws.receive_json()
                    assert hello["handshake"]["path"] == "/client/"
                async with http.get(gateway.url + "/client/?id=1") as response:
                    assert response.status == 404
    finally:
        await runner.cleanup()
