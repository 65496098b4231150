"""HTTP test fixtures (a local HTTP server on 127.0.0.1): filled in by the HTTP work."""
