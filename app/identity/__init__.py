"""Identity: API clients, keys, tokens, request signatures, customers and KYC."""
