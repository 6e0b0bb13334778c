"""The local stand-in for Azure Web PubSub: the client WebSocket endpoint, the data-plane REST API, the event handler."""
