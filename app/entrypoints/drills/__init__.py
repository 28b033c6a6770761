"""Incident drills: each injects a real fault into a running stack and checks detection,
recovery and the ledger invariants, then leaves an `ops.drill` evidence record."""
