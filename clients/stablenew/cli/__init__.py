"""The `stablenew` command line."""

import os

# gRPC's core logs a failed connection (a TLS handshake, say) on standard error by itself; a
# command reports every failure in one line of its own, so only gRPC's errors are let through.
# gRPC reads this when it is imported, which is after this package; a value set by the user
# stays (GRPC_VERBOSITY=INFO or DEBUG shows them again).
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
