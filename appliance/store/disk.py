"""Free space on the database's filesystem, for /healthz and `appliance doctor`.

SQLite needs room for the WAL and for each transaction; when the disk fills, writes fail (the
writer rolls back and recovers once there is space again, see db.py). This says so before it
happens: "low disk" below the threshold ([security] low_disk_mb).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MB = 1024 * 1024


@dataclass(frozen=True)
class DiskStatus:
    path: str               # the folder measured
    free_bytes: int         # available to this (unprivileged) process
    total_bytes: int
    low: bool
    message: str            # "ok, 1234 MB free" / "low disk: 12 MB free (below 200 MB)"


def disk_status(database: Path | str, low_mb: int = 200) -> DiskStatus:
    """The free space where `database` lives (its folder, or the nearest existing parent)."""
    folder = Path(database).resolve().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    st = os.statvfs(folder)
    free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
    low = free < low_mb * MB
    text = (f"low disk: {free // MB} MB free (below {low_mb} MB)" if low
            else f"ok, {free // MB} MB free")
    return DiskStatus(str(folder), free, total, low, text)
