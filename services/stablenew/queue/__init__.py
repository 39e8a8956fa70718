"""The queue service: the durable job queue, its event log and runner leases."""
