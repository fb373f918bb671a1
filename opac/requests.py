"""OPAC: the purchase request form (リクエスト), through the internal API."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
