"""The structured fuzz of every RPC (tests/fuzz/rpc_fuzz.py) at full length against the
services as processes (tests/fuzz/stack.py): a status-code histogram, the RPCs that answered
INTERNAL or UNKNOWN, services that exited, and tracebacks in their logs."""

from __future__ import annotations

from pathlib import Path

from benchmarks.faults.ledger import Outcome
from tests.fuzz.rpc_fuzz import describe_findings, fuzz_services, histogram
from tests.fuzz.stack import running_stack


def rpc_fuzz(root: Path, examples: int = 500) -> tuple[Outcome, str]:
    """The outcome (rounds = requests sent) and the per-RPC findings as text."""
    with running_stack(root) as stack:
        reports = list(fuzz_services(stack.addresses, examples))
        exits, tracebacks = stack.exits(), stack.tracebacks()
        unanswering = stack.unanswering()
    codes = histogram(reports)
    found = {report.method: report.found for report in reports if report.found}
    outcome = Outcome(f"fuzz, {examples}/RPC", sum(codes.values()), 0, figures={
        "RPCs": len(reports), "status codes": dict(codes.most_common()),
        "INTERNAL/UNKNOWN by RPC": found, "exited": exits,
        "not SERVING afterwards": unanswering,
        "tracebacks in logs": {name: n for name, n in tracebacks.items() if n}})
    outcome.errors = sum(found.values()) + len(exits) + len(unanswering)
    per_rpc = "\n".join(f"  {report.method:<28} {dict(report.codes.most_common())}"
                        for report in reports)
    return outcome, f"fuzz, status codes per RPC:\n{per_rpc}\n{describe_findings(reports)}"
