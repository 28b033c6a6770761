"""The evidence service: append-only, Merkle-logged, signed audit evidence."""
