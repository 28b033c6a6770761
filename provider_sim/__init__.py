"""The provider simulator: two fake PSPs (`acme`, `globex`) behind one local HTTP server.

It is the project's only stand-in, for the outside world. `app/` never imports it (an
import-linter contract); the dev stack and the test fixtures run it as its own process
(`python -m provider_sim`) and the adapters talk to it over HTTP only.
"""
