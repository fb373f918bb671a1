"""Internal API: purchase requests from the OPAC."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/internal/v1/requests", include_in_schema=False)
