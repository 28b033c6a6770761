"""An import-linter contract type that derives every domain rule from `app.domains`.

`pyproject.toml` declares it once (`type = "domains"`); its check builds the built-in
layers, protected and forbidden contracts from the registry and the import graph, so a
new domain is covered by naming it in `app/domains.py`, and a domain package that is not
named there breaks the contract.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import grimp
from importlinter import Contract, ContractCheck, fields, output
from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.contracts.layers import LayersContract
from importlinter.contracts.protected import ProtectedContract

# Packages of `app` that are not domains.
NOT_DOMAINS = frozenset({"app.entrypoints", "app.platform", "app.domains"})


@dataclass(frozen=True)
class _Outcome:
    contract: Contract
    check: ContractCheck


class DomainsContract(Contract):
    """Options: `registry`, the module that defines LAYERS, DOMAINS, PUBLIC_MODULES and
    ROUTES_MODULE (`app.domains`)."""

    type_name = "domains"

    registry = fields.StringField()

    def _registry(self) -> Any:
        return importlib.import_module(str(self.registry))

    def derived(self, graph: grimp.ImportGraph) -> list[Contract]:
        """The built-in contracts that the registry implies, for this import graph."""
        registry = self._registry()
        domains = [f"app.{name}" for name in registry.DOMAINS]
        layers = [
            "app.entrypoints",
            *(" | ".join(f"app.{name}" for name in layer) for layer in registry.LAYERS),
            "app.platform",
        ]
        contracts: list[Contract] = [
            self._built(LayersContract, "layers", {"layers": layers}),
            self._built(
                ForbiddenContract,
                "the evidence service imports only app.platform from app",
                {
                    "source_modules": ["evidence"],
                    "forbidden_modules": ["app.entrypoints", *domains],
                },
            ),
            self._built(
                ForbiddenContract,
                "the pipeline talks to the evidence service over HTTP only and imports no domain",
                {
                    "source_modules": ["pipeline"],
                    "forbidden_modules": ["evidence", "app.entrypoints", *domains],
                },
            ),
        ]
        public = {*registry.PUBLIC_MODULES, registry.ROUTES_MODULE}
        for domain in domains:
            children = graph.find_children(domain) if domain in graph.modules else set()
            private = sorted(c for c in children if c.rpartition(".")[2] not in public)
            if private:
                contracts.append(
                    self._built(
                        ProtectedContract,
                        f"{domain}'s private modules are used only through its api.py",
                        {"protected_modules": private, "allowed_importers": [domain]},
                    )
                )
            routes = f"{domain}.{registry.ROUTES_MODULE}"
            if routes in children:
                contracts.append(
                    self._built(
                        ProtectedContract,
                        f"{routes} is mounted only by the composition root",
                        {
                            "protected_modules": [routes],
                            "allowed_importers": [domain, "app.entrypoints"],
                        },
                    )
                )
        return contracts

    def unregistered(self, graph: grimp.ImportGraph) -> list[str]:
        """Packages of `app` that are neither platform, composition root nor a named domain."""
        named = {f"app.{name}" for name in self._registry().DOMAINS}
        return sorted(
            child
            for child in graph.find_children("app")
            if child not in NOT_DOMAINS and child not in named
        )

    def _built(self, kind: type[Contract], name: str, options: dict[str, Any]) -> Contract:
        return kind(name=name, session_options=self.session_options, contract_options=options)

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        broken = [
            _Outcome(contract, outcome)
            for contract in self.derived(graph)
            if not (outcome := contract.check(graph, verbose)).kept
        ]
        unregistered = self.unregistered(graph)
        return ContractCheck(
            kept=not broken and not unregistered,
            metadata={"broken": broken, "unregistered": unregistered},
        )

    def render_broken_contract(self, check: ContractCheck) -> None:
        for package in check.metadata["unregistered"]:
            output.print_error(
                f"{package} is not named in app/domains.py: add it to a layer there", bold=False
            )
            output.new_line()
        outcome: _Outcome
        for outcome in check.metadata["broken"]:
            output.print_heading(outcome.contract.name, output.HEADING_LEVEL_THREE)
            outcome.contract.render_broken_contract(outcome.check)
