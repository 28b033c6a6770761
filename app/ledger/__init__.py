"""Ledger: accounts, multi-leg transactions, holds, reversals and the hash-chained journal."""
