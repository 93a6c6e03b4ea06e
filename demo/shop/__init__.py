"""The demo shop: catalog, cart and payments, three real ASGI services."""
