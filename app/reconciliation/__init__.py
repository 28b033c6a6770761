"""Reconciliation: matching provider settlement files against the ledger."""
