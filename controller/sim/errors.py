"""ARI error responses as res_ari builds them."""

from __future__ import annotations


class AriError(Exception):
    """An ARI error response: 4xx bodies use ``message``, the allocation 500 uses ``error``."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        *,
        error: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or error)
        self.status = status
        self.body: dict[str, str] = {"error": error} if error is not None else {"message": message or ""}
        self.headers = headers or {}


def allocation_failed() -> AriError:
    return AriError(500, error="Allocation failed")
