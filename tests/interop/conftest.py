from tests.support.fixtures import js_peer  # noqa: F401  (pytest finds fixtures by name)
