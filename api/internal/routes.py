"""Internal API: My Library for the OPAC."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/internal/v1", include_in_schema=False)
