"""Staff console: the circulation counter (貸出・返却カウンター), built for a barcode scanner."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from staff.routes import Console, allowed, render

router = APIRouter(include_in_schema=False)


@router.get("/circulation")
def counter_home(request: Request, ctx: Console = Depends(allowed("circulation", "view"))) -> Response:
    return render(request, "section.html", ctx, title="貸出・返却", section="circulation")
