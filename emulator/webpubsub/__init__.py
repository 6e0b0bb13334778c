"""The local stand-in for Azure Web PubSub: the client WebSocket endpoint, the data-plane REST API and the event
handler's CloudEvents (the ``webpubsub-emulator`` command, :mod:`emulator.webpubsub.cli`)."""
