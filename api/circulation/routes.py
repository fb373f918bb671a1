"""JSON API for circulation (貸出・返却・延長)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/circulation", tags=["circulation"])
