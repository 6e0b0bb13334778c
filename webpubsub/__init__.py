"""Azure Web PubSub, sans-I/O: connection strings, client access tokens, the JSON subprotocols and the event handler's
CloudEvents; plus an asyncio client (:mod:`webpubsub.client`)."""
