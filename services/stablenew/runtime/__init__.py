"""The server runtime every service runs on: gRPC server, interceptors, settings, channels,
logging, paging and SQLite helpers."""
