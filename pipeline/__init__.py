"""The gated CI pipeline: scanning gates decided by Rego, each writing signed evidence."""
