"""FastAPI dependencies shared by the JSON API and the staff console."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fastapi import Depends, Request
from psycopg import Connection
from psycopg.rows import DictRow

from api.audit import Actor
from api.auth.permissions import Principal
from api.auth.service import UNAUTHENTICATED, resolve_session
from api.errors import forbidden

DB = Connection[DictRow]


def get_conn(request: Request) -> Iterator[DB]:
    """A pooled connection in autocommit mode; services open explicit transactions."""
    with request.app.state.pool.connection() as conn:
        yield conn


def client_addr(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def bearer_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UNAUTHENTICATED
    return token.strip()


def api_principal(request: Request, conn: DB = Depends(get_conn)) -> Principal:
    principal, _ = resolve_session(conn, bearer_token(request), "api")
    return principal


def api_permission(area: str, action: str) -> Callable[..., Principal]:
    """Dependency: the caller must hold `area:action`, else 403 forbidden."""

    def _check(principal: Principal = Depends(api_principal)) -> Principal:
        if not principal.can(area, action):
            raise forbidden(area, action)
        return principal

    return _check


def actor_for(principal: Principal, request: Request) -> Actor:
    return Actor(principal.username, client_addr(request), principal.account_id)
