import datetime as dt


class DayConverter:
    """YYYY-MM-DD in URLs, a date in views."""

    regex = r"\d{4}-\d{2}-\d{2}"

    def to_python(self, value: str) -> dt.date:
        return dt.date.fromisoformat(value)  # ValueError -> 404

    def to_url(self, value) -> str:
        return value.isoformat() if isinstance(value, dt.date) else str(value)
