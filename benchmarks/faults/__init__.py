"""`make faults`: the fault suite. Each scenario injects one kind of fault into real service
processes on the loopback (SIGKILL, a partitioned or stalled client, a full disk, a failing or
hanging WebUI, a crowd of clients, hostile requests) and counts, from the queue's event log and
the history's records, what was lost, duplicated or left stuck. See docs/RELIABILITY.md."""
