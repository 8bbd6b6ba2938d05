"""The devices page (monitor/devices.py): one row per device, sortable by each column, over 30 or
90 days. Bad range or sort values show a message and fall back to the defaults."""

from urllib.parse import urlencode

from django.shortcuts import render
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import mark_safe

from .. import devices
from ..access import VIEW, require

# a measure's cell, rendered here rather than by the template engine: 800 cells for 200 devices
CELL_HTML = """
      <td class="dev-cell" data-measure="{key}">
        <svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{title}"><title>{title}</title>{paths}</svg>
        {latest}{total}
      </td>"""
PATH_HTML = (
    '<path class="{cls}" d="{d}" fill="none" stroke="{colour}" stroke-width="1.5" '
    'stroke-linecap="round" stroke-linejoin="round"/>'
)
LINE_COLOUR, FAINT_COLOUR = "#2271b1", "#b0b0b0"
LATEST_HTML = '<div class="dev-latest{grey}"><span class="dev-value">{value}</span>{counts}{interval}{too_few}</div>'
NONE_HTML = '<div class="dev-latest dev-none">no images on {day}</div>'
TOTAL_HTML = '<div class="dev-total{grey}">{days} days: {value}{counts}</div>'


def _get_latest_html(figure: dict | None, latest_day) -> str:
    if figure is None:
        return NONE_HTML.format(day=latest_day.isoformat())
    return LATEST_HTML.format(
        grey=" too-few" if figure["too_few"] else "",
        value=escape(figure["value"]),
        counts=f' <span class="dev-counts">{escape(figure["counts"])}</span>' if figure["counts"] else "",
        interval=f' <span class="dev-ci">{escape(figure["interval"])}</span>' if figure["interval"] else "",
        too_few=' <span class="dev-too-few">too few</span>' if figure["too_few"] else "",
    )


def _get_total_html(figure: dict | None, range_days: int) -> str:
    if figure is None:
        return ""
    return TOTAL_HTML.format(
        grey=" too-few" if figure["too_few"] else "",
        days=range_days,
        value=escape(figure["value"]),
        counts=f" ({escape(figure['counts'])})" if figure["counts"] else "",
    )


def _get_cells_html(row: dict, latest_day, range_days: int) -> str:
    """A device's measure cells: sparkline, the latest day's figure, the range's."""
    out = []
    for c in row["cells"]:
        paths = "".join(
            PATH_HTML.format(cls=cls, d=d, colour=colour)
            for cls, d, colour in (("spark-faint", c.faint, FAINT_COLOUR), ("spark-line", c.line, LINE_COLOUR))
            if d
        )
        out.append(
            CELL_HTML.format(
                key=c.key,
                width=devices.SPARK_WIDTH,
                height=devices.SPARK_HEIGHT,
                title=escape(c.title),
                paths=paths,
                latest=_get_latest_html(c.latest, latest_day),
                total=_get_total_html(c.total, range_days),
            )
        )
    return mark_safe("".join(out))  # every value above is escaped or a number


def _get_headers(sort: str, range_days: int) -> list[dict]:
    """Each column's heading with the link that sorts by it (the range kept)."""
    out = []
    for column, (heading, _) in devices.COLUMNS.items():
        current = sort.removeprefix("-") == column
        out.append(
            {
                "key": column,
                "heading": heading,
                "href": "?" + urlencode({"days": range_days, "sort": devices.header_sort(column, sort)}),
                "aria_sort": ("descending" if sort.startswith("-") else "ascending") if current else "",
            }
        )
    return out


@require(VIEW)
def device_list(request):
    range_days, range_error = devices.parse_range(request.GET.get("days"))
    sort, sort_error = devices.parse_sort(request.GET.get("sort"))
    table = devices.device_table(range_days, sort)
    for row in table["rows"]:
        row["cells_html"] = _get_cells_html(row, table["latest_day"], range_days)
    ctx = {
        "errors": [e for e in (range_error, sort_error) if e],
        "ranges": [(n, "?" + urlencode({"days": n, "sort": sort})) for n in devices.RANGES],
        "range_days": range_days,
        "sort": sort,
        "headers": _get_headers(sort, range_days),
        "home_url": reverse("home"),
        **table,
    }
    return render(request, "monitor/devices.html", ctx)
