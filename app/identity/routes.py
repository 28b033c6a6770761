"""Identity's `/v1` JSON endpoints: the API clients here, customers in `customers.py`.

The OAuth2 token endpoint and the JWKS sit outside the JSON pipeline, in `oauth.py`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.identity import customers, domain, service
from app.platform.errors import ValidationError
from app.platform.utc import rfc3339_or_none
from app.platform.web import Call, Endpoint, Result

_PUBLIC_JWK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kty", "crv", "x"],
    "properties": {
        "kty": {"type": "string", "maxLength": 8},
        "crv": {"type": "string", "maxLength": 16},
        "x": {"type": "string", "maxLength": 64},
        "kid": {"type": "string", "maxLength": 128},
        "alg": {"type": "string", "maxLength": 16},
        "use": {"type": "string", "maxLength": 8},
    },
}
_KEY_FIELDS: dict[str, Any] = {
    "public_key_pem": {"type": "string", "minLength": 1, "maxLength": domain.MAX_PEM_LENGTH},
    "public_jwk": _PUBLIC_JWK_SCHEMA,
}
CREATE_CLIENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "scopes"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": domain.MAX_NAME_LENGTH},
        "scopes": {
            "type": "array",
            "minItems": 1,
            "maxItems": domain.MAX_SCOPES,
            "uniqueItems": True,
            "items": {"type": "string", "maxLength": 64},
        },
        **_KEY_FIELDS,
    },
    # A client needs exactly one signing key to start with, given as PEM or as JWK.
    "oneOf": [{"required": ["public_key_pem"]}, {"required": ["public_jwk"]}],
}
_KEY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["key_id", "public_jwk", "created_at", "not_before", "not_after"],
    "properties": {
        "key_id": {"type": "string"},
        "public_jwk": {"type": "object"},
        "created_at": {"type": "string", "format": "date-time"},
        "not_before": {"type": "string", "format": "date-time"},
        "not_after": {"type": ["string", "null"], "format": "date-time"},
    },
}
CLIENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "name", "scopes", "disabled", "owner", "created_at", "keys"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "disabled": {"type": "boolean"},
        "owner": {"type": ["string", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
        "keys": {"type": "array", "items": _KEY_SCHEMA},
        "key_id": {"type": "string"},
        "client_secret": {"type": ["string", "null"]},
    },
}


def key_view(key: domain.ClientKey) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "public_jwk": key.public_jwk,
        "created_at": rfc3339_or_none(key.created_at),
        "not_before": rfc3339_or_none(key.not_before),
        "not_after": rfc3339_or_none(key.not_after),
    }


def client_view(client: domain.Client) -> dict[str, Any]:
    return {
        "id": client.id,
        "name": client.name,
        "scopes": list(client.scopes),
        "disabled": client.disabled,
        "owner": client.owner,
        "created_at": rfc3339_or_none(client.created_at),
        "keys": [key_view(key) for key in client.keys],
    }


def _jwk_from_body(body: dict[str, Any]) -> dict[str, str]:
    if ("public_key_pem" in body) == ("public_jwk" in body):
        raise domain.InvalidPublicKeyError("send exactly one of public_key_pem and public_jwk")
    if "public_key_pem" in body:
        return domain.public_jwk_from_pem(body["public_key_pem"])
    return domain.check_public_jwk(body["public_jwk"])


async def create_client_handler(call: Call, session: AsyncSession) -> Result:
    created = await service.create_client(
        session,
        name=call.body["name"],
        scopes=call.body["scopes"],
        public_jwk=_jwk_from_body(call.body),
        owner=call.caller.client_id,
    )
    view = {**client_view(created.client), "key_id": created.key_id}
    return Result(
        status=201,
        body={**view, "client_secret": created.client_secret},
        resource_id=created.client.id,
        replay_body={**view, "client_secret": None},
    )


async def get_client_handler(call: Call, session: AsyncSession) -> Result:
    client = await service.get_client(session, call.path["id"])
    return Result(status=200, body=client_view(client), resource_id=client.id)


ADD_KEY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        **_KEY_FIELDS,
        "not_before": {"type": "string", "format": "date-time", "maxLength": 40},
        "not_after": {"type": "string", "format": "date-time", "maxLength": 40},
        "retire_previous_at": {"type": "string", "format": "date-time", "maxLength": 40},
    },
}


def _moment(body: dict[str, Any], name: str) -> datetime | None:
    raw = body.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationError(f"{name} must be an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise ValidationError(f"{name} must carry a UTC offset")
    return moment


async def add_key_handler(call: Call, session: AsyncSession) -> Result:
    client_id = call.path["id"]
    client = await service.get_client(session, client_id)
    not_before, not_after = _moment(call.body, "not_before"), _moment(call.body, "not_after")
    if not_before is not None and not_after is not None and not_after <= not_before:
        raise ValidationError("not_after must be later than not_before")
    key_id = await service.add_key(
        session,
        client_id=client_id,
        public_jwk=_jwk_from_body(call.body),
        not_before=not_before,
        not_after=not_after,
    )
    retire_at = _moment(call.body, "retire_previous_at")
    if retire_at is not None:
        # Rotation: the keys registered before this one stop working at `retire_at`.
        for key in client.keys:
            if key.not_after is None or key.not_after > retire_at:
                await service.set_key_validity(session, client_id, key.key_id, retire_at)
    updated = await service.get_client(session, client_id)
    return Result(
        status=201, body={**client_view(updated), "key_id": key_id}, resource_id=client_id
    )


async def disable_client_handler(call: Call, session: AsyncSession) -> Result:
    client = await service.set_disabled(session, call.path["id"], True)
    return Result(status=200, body=client_view(client), resource_id=client.id)


def endpoints() -> list[Endpoint]:
    """The identity domain's `/v1` JSON endpoints: clients here, customers in customers.py."""
    return [*_client_endpoints(), *customers.endpoints()]


def _client_endpoints() -> list[Endpoint]:
    return [
        Endpoint(
            method="POST",
            path="/v1/clients/{id}/keys",
            handler=add_key_handler,
            action="clients.keys.create",
            resource_type="client",
            summary="Register another public key (rotation), optionally retiring the others",
            scopes=("clients:admin",),
            success_status=201,
            request_schema=ADD_KEY_SCHEMA,
            response_schema=CLIENT_SCHEMA,
            idempotent=True,
            errors=(service.ClientNotFoundError, domain.InvalidPublicKeyError),
            tag="identity",
        ),
        Endpoint(
            method="POST",
            path="/v1/clients/{id}/disable",
            handler=disable_client_handler,
            action="clients.disable",
            resource_type="client",
            summary="Disable a client: its tokens are refused from the next request on",
            scopes=("clients:admin",),
            response_schema=CLIENT_SCHEMA,
            idempotent=True,
            errors=(service.ClientNotFoundError,),
            tag="identity",
        ),
        Endpoint(
            method="POST",
            path="/v1/clients",
            handler=create_client_handler,
            action="clients.create",
            resource_type="client",
            summary="Create an API client (the secret is shown once)",
            scopes=("clients:admin",),
            success_status=201,
            request_schema=CREATE_CLIENT_SCHEMA,
            response_schema=CLIENT_SCHEMA,
            idempotent=True,
            errors=(domain.UnknownScopeError, domain.InvalidPublicKeyError),
            tag="identity",
        ),
        Endpoint(
            method="GET",
            path="/v1/clients/{id}",
            handler=get_client_handler,
            action="clients.read",
            resource_type="client",
            summary="Read an API client and its keys",
            scopes=("clients:admin",),
            response_schema=CLIENT_SCHEMA,
            errors=(service.ClientNotFoundError,),
            tag="identity",
        ),
    ]
