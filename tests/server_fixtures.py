"""The team registry server for the tests: a real uvicorn process on 127.0.0.1."""
