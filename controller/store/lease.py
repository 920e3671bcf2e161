"""The hot-standby lease row (``acd_ha_lease``): who is the active controller of an ARI app.

One row per lease name (the ARI app). Expiry is judged on the database's clock only, so the
controllers' clocks never need to agree. ``token`` grows by one at every takeover: it is the
fencing token a former active compares before it writes (``controller.ha.lease``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.base import Base

__all__ = ["LeaseRow"]


class LeaseRow(Base):
    __tablename__ = "acd_ha_lease"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))  # "" once released
    address: Mapped[str] = mapped_column(String(300))  # the holder's HTTP API, for standbys' answers
    token: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    acquired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    renewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
