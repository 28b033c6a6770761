"""Risk: Rego risk rules, velocity counters and manual review."""
