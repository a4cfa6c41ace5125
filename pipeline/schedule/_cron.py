"""Cron expressions (croniter): checked when a schedule is added, ticks found while serving."""

from __future__ import annotations

from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from ..errors import InputValueError

__all__ = ["check_cron", "latest_tick", "zone"]


def check_cron(expression: str) -> str:
    """``expression`` if croniter reads it: five fields (minute hour day month weekday),
    or six with seconds last.

    Raises
    ------
    InputValueError
        It does not; the message shows the form.
    """
    fields = expression.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(expression):
        raise InputValueError(
            f"--cron {expression!r} is not a cron expression; give five fields, "
            "minute hour day-of-month month day-of-week, e.g. '0 2 * * *' for 02:00 every "
            "day (a sixth field is seconds)"
        )
    return expression


def zone(name: str | None) -> tzinfo:
    """The time zone ``name`` (IANA, e.g. ``Europe/Paris``), or this machine's own.

    Raises
    ------
    InputValueError
        ``name`` is not a known time zone.
    """
    if name is None:
        local = datetime.now().astimezone().tzinfo
        assert local is not None
        return local
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputValueError(
            f"--timezone {name!r} is not a time zone; give an IANA name such as UTC or "
            "Europe/Paris, or leave it out for this machine's"
        ) from None


def latest_tick(
    expression: str, since: datetime, until: datetime, where: tzinfo
) -> datetime | None:
    """The last tick of ``expression`` after ``since`` and at or before ``until``, in
    zone ``where``; None if there is none. Ticks missed while nothing served come
    together as this one.

    Examples
    --------
    >>> from datetime import UTC
    >>> latest_tick("0 2 * * *", datetime(2026, 1, 1, 3, tzinfo=UTC),
    ...             datetime(2026, 1, 4, 1, tzinfo=UTC), UTC).isoformat()
    '2026-01-03T02:00:00+00:00'
    """
    latest = croniter(expression, until.astimezone(where)).get_prev(datetime)
    return latest if latest > since else None
