"""Architecture checks that run in the linters, never in the services."""
