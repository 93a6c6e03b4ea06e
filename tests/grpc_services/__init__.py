"""A real gRPC service for the gRPC tests: orders.proto, its server and a client that calls every method."""
