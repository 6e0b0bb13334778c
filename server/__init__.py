"""``chat-server``: the Chatroom app server for Azure SignalR Service in Serverless mode.

``create_app(settings)`` (``server.app``) builds the aiohttp application: the negotiate redirect (``negotiate``),
the upstream webhook (``upstream``) dispatching to the Chat hub (``hub``), whose sends go out through the REST API
(``rest_client``), and the web page (``web/``). ``server.cli.main`` is the console script.
"""
