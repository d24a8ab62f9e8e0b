"""The JSON refusal every admin route answers: `{"detail", "field"?}`, counted in the rejection metrics
under (route, reason); a 503 says when to retry. One function, so every route refuses alike."""

from __future__ import annotations

from starlette.responses import JSONResponse

from .metrics import WebhookMetrics
from .telegram_endpoint import RETRY_AFTER_SECONDS


def refuse(
    metrics: WebhookMetrics, route: str, status: int, reason: str, detail: str, field: str | None = None
) -> JSONResponse:
    metrics.rejected[(route, reason)] += 1
    body: dict[str, object] = {"detail": detail}
    if field is not None:
        body["field"] = field
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return JSONResponse(body, status_code=status, headers=headers)
