"""Providers: adapters that map each payment provider onto internal states."""
