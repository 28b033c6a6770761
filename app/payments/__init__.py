"""Payments: the payment saga (risk, provider, ledger, outbox), refunds and payouts."""
