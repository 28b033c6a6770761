"""Shared infrastructure: settings, database, errors, HTTP plumbing, Vault and OPA clients."""
