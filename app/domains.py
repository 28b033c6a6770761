"""The domains of the modular monolith, in layers: the one place a domain is named.

Adding a domain is one edit: create `app/<name>/` and put its name in a layer below. From
this list alone follow
- the import contracts (`architecture/import_contracts.py`): the layers, each domain's
  private modules used only through its `api.py`/`events.py`, its `routes.py` mounted only
  by the composition root, and no domain reachable from the evidence service or the
  pipeline;
- the routes the API mounts (`app/entrypoints/asgi.py`: every domain's `routes.endpoints()`);
- its migrations, found as `app/<name>/migrations` (`app/platform/migrate.py`).

Layers read top to bottom. A domain may use the door of a domain in a lower layer, never
one above it nor one beside it in the same layer. The composition root
(`app.entrypoints`) sits above them all and `app.platform` below them all.
"""

from __future__ import annotations

LAYERS: tuple[tuple[str, ...], ...] = (
    # Reconciliation reads what payments recorded and what the providers settled.
    ("reconciliation",),
    ("payments",),
    ("risk", "ledger", "providers"),
    ("identity",),
)

DOMAINS: tuple[str, ...] = tuple(name for layer in LAYERS for name in layer)

# A domain's public modules: everything else in it is private to it.
PUBLIC_MODULES = ("api", "events")
# Its HTTP surface, which only the composition root may mount.
ROUTES_MODULE = "routes"
