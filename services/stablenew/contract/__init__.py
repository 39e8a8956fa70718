"""The contract in Python: the dataclass twins of the protobuf messages, their mapping, the
canonical config hash and the error vocabulary. Transport-free: no grpc, no SQL, no service."""
