"""Errors are declared once, as classes: codes, OpenAPI and problem documents follow from them."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator

import pytest

import app
import evidence
from app.entrypoints.asgi import all_endpoints
from app.ledger import api as ledger_api
from app.platform.errors import DomainError, NotFoundError, code_of
from app.platform.openapi import build_document, declared_errors
from app.platform.web import Endpoint, problem_response
from evidence import endpoints as evidence_endpoints


def _import_everything() -> None:
    for package in (app, evidence):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if ".migrations" in module.name or ".alembic" in module.name:
                continue
            importlib.import_module(module.name)


def _subclasses(cls: type[DomainError]) -> Iterator[type[DomainError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _all_errors() -> list[type[DomainError]]:
    _import_everything()
    return sorted(set(_subclasses(DomainError)), key=lambda c: f"{c.__module__}.{c.__name__}")


def _endpoints() -> list[Endpoint]:
    return [*all_endpoints(), *evidence_endpoints.endpoints()]


def test_code_is_the_class_name_in_snake_case_when_the_class_sets_none() -> None:
    assert ledger_api.InsufficientFundsError.code == "insufficient_funds"
    assert code_of("IdempotencyKeyReusedError") == "idempotency_key_reused"

    class PayoutLimitExceededError(DomainError):
        status = 422

    assert PayoutLimitExceededError.code == "payout_limit_exceeded"


def test_subclass_keeps_the_shared_code_when_its_parent_shares_it() -> None:
    class InvoiceNotFoundError(NotFoundError):
        pass

    assert InvoiceNotFoundError.code == "not_found"
    assert ledger_api.TransactionNotFoundError.code == "not_found"


@pytest.mark.parametrize("error", _all_errors(), ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_no_error_class_spells_out_the_code_its_name_implies_when_declared(
    error: type[DomainError],
) -> None:
    assert not (error.writes_code and error.code == code_of(error.__name__)), (
        f"{error.__name__} repeats its name as a string: drop `code = {error.code!r}`"
    )


def test_redundant_code_is_caught_when_a_class_spells_it_out() -> None:
    class RefundTooLateError(DomainError):
        code = "refund_too_late"

    assert RefundTooLateError.writes_code
    assert RefundTooLateError.code == code_of(RefundTooLateError.__name__)


def test_every_error_class_of_the_code_base_loads_under_the_rule_when_imported() -> None:
    errors = _all_errors()
    assert len(errors) > 30
    assert {error.code for error in errors} >= {"insufficient_funds", "not_found", "unauthorized"}


@pytest.mark.parametrize("endpoint", _endpoints(), ids=lambda e: f"{e.method} {e.path}")
def test_openapi_lists_the_code_and_status_of_every_declared_error_when_built(
    endpoint: Endpoint,
) -> None:
    document = build_document("t", "1", [endpoint])
    path = next(iter(document["paths"]))
    operation = document["paths"][path][endpoint.method.lower()]
    assert operation["x-error-codes"] == [error.code for error in declared_errors(endpoint)]
    for error in endpoint.errors:
        assert error.code in operation["x-error-codes"]
        assert f"`{error.code}`" in operation["responses"][str(error.status)]["description"]


def test_problem_document_takes_status_code_and_title_from_the_class_when_raised() -> None:
    response = problem_response(ledger_api.InsufficientFundsError("short by 5"))
    assert response.status_code == ledger_api.InsufficientFundsError.status
    body = bytes(response.body).decode()
    assert '"code":"insufficient_funds"' in body
    assert f'"title":"{ledger_api.InsufficientFundsError.title}"' in body
