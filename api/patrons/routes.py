"""JSON API for patrons (利用者). Paths carry the internal patron id, never the card number or a name:
URLs end up in logs and browser histories."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/patrons", tags=["patrons"])
