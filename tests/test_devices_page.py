"""The devices page: one row per device with sparklines (gaps where there is no data), the latest
day's figures with counts and Wilson intervals, last seen and silence, a 30 / 90 day range,
sorting by each column, clear messages for bad parameters; login required; a constant number of
queries whatever the number of devices and days."""

import datetime as dt
import math
import random
from html.parser import HTMLParser

import pytest
from django.urls import reverse

from monitor import daily
from monitor.models import DailyMetric, Device
from tests import factories as f

DAY = dt.date(2026, 11, 20)


class Page(HTMLParser):
    """The devices table as {device: {"measure": {"text": ..., "paths": {class: d}}, ...}} in
    page order, plus the headings' links and the page's alert messages."""

    def __init__(self, html: str):
        super().__init__()
        self.rows: dict[str, dict] = {}
        self.headers: dict[str, str] = {}
        self.errors: list[str] = []
        self._row = self._cell = self._th = None
        self._in_error = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "device" in (a.get("class") or "").split():
            self._row = self.rows.setdefault(a["data-device"], {})
        elif tag == "td" and self._row is not None:
            self._cell = self._row.setdefault(
                a.get("data-measure") or a.get("class") or "name", {"text": "", "paths": {}}
            )
        elif tag == "a" and self._cell is not None and "device-overview" in (a.get("class") or ""):
            self._cell["href"] = a["href"]
        elif tag == "path" and self._cell is not None:
            self._cell["paths"][a["class"]] = a["d"]
        elif tag == "th":
            self._th = a.get("data-sort")
        elif tag == "a" and self._th:
            self.headers[self._th] = a["href"]
        elif tag == "p" and a.get("role") == "alert":
            self._in_error = True
            self.errors.append("")

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None
        elif tag == "td":
            self._cell = None
        elif tag == "th":
            self._th = None
        elif tag == "p":
            self._in_error = False

    def handle_data(self, data):
        if self._cell is not None and not self.lasttag == "title":
            self._cell["text"] += data
        if self._in_error:
            self.errors[-1] += data


def page(client, **params) -> Page:
    response = client.get(reverse("devices"), params)
    assert response.status_code == 200
    return Page(response.content.decode())


def text(cell: dict) -> str:
    return " ".join(cell["text"].split())


def wilson_text(k: int, n: int) -> str:
    """The 95% Wilson score interval, computed here from its textbook formula."""
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if k == 0 else centre - half
    high = 1.0 if k == n else centre + half
    return f"95% CI {100 * low:.1f}% – {100 * high:.1f}%"


def metric(day, device=None, **figures) -> DailyMetric:
    values = {"images": 100, "counts": {"live": 90, "attack": 10}, "scored": 100, "flagged": 10, "all_scored": 100}
    values.update(figures)
    return DailyMetric.objects.create(day=day, device=f.device(device) if device else None, **values)


def segments(path: str) -> int:
    """How many separate runs of days a sparkline path draws."""
    return path.count("M")


def points(path: str) -> int:
    return path.count("M") + path.count("L")


@pytest.fixture
def viewer(client, personas):
    client.force_login(personas["viewer"])
    return client


def test_it_requires_login_and_the_view_permission(client, personas):
    response = client.get(reverse("devices"))
    assert response.status_code == 302 and "/login/" in response["Location"]
    client.force_login(personas["nobody"])
    assert client.get(reverse("devices")).status_code == 403
    client.force_login(personas["viewer"])
    assert client.get(reverse("devices")).status_code == 200


def test_it_shows_the_latest_days_figures_computed_from_the_images(viewer):
    # cam-a on the latest day: 40 images, 30 live, 6 attack, 4 low quality; of the 36 that passed
    # the gates 20 are labelled genuine, 3 of them flagged
    for i in range(30):
        f.image(day=DAY, device_name="cam-a", score=0.9, label="genuine" if i < 17 else "")
    for i in range(6):
        f.image(day=DAY, device_name="cam-a", score=0.1, label="genuine" if i < 3 else "")
    for _ in range(4):
        f.image(day=DAY, device_name="cam-a", score=0.2, category="low_quality", failed_gates=["blur"])
    f.image(day=DAY, device_name="cam-b", score=0.9)
    daily.compute_day(DAY)
    Device.objects.update(last_day=DAY)

    row = page(viewer).rows["cam-a"]
    assert text(row["images"]).startswith("40")
    # flag rate counts the 36 that passed the gates; FPR the 20 labelled genuine among them
    assert "16.7% 6 / 36 " + wilson_text(6, 36) in text(row["flag_rate"])
    assert "15.0% 3 / 20 " + wilson_text(3, 20) in text(row["fpr"])
    assert "too few" in text(row["fpr"]) and "too few" not in text(row["flag_rate"])
    # failing quality: 4 low quality of the 40 scored images
    assert "10.0% 4 / 40" in text(row["low_quality"])
    assert text(row["dev-seen"]) == DAY.isoformat()


def test_it_draws_gaps_where_a_device_has_no_data(viewer):
    # figures exist for the last 20 days; cam-a has images on 10 of them, in two runs, and
    # labelled genuine in only one run
    for back in range(20):
        metric(DAY - dt.timedelta(days=back))
    for run_index, run in enumerate([range(0, 5), range(15, 20)]):
        for back in run:
            metric(DAY - dt.timedelta(days=back), "cam-a", genuine=40 * (run_index == 0), fp=2 * (run_index == 0))
    row = page(viewer).rows["cam-a"]
    # flag rate: a line for each run of days with images
    assert segments(row["flag_rate"]["paths"]["spark-line"]) == 2
    # FPR: only where labelled genuine exist
    assert segments(row["fpr"]["paths"]["spark-line"]) == 1
    # images per day: 0 on the days with figures for other devices, a gap on days without any
    assert segments(row["images"]["paths"]["spark-line"]) == 1
    assert points(row["images"]["paths"]["spark-line"]) == 20


def test_it_greys_the_days_with_too_few_images(viewer):
    for i in range(5):
        day = DAY - dt.timedelta(days=4 - i)
        metric(day)
        metric(day, "cam-a", scored=100 if i != 2 else 10, flagged=5)
    row = page(viewer).rows["cam-a"]
    # the strong line breaks at the day with 10 images; the faint one joins all five
    assert segments(row["flag_rate"]["paths"]["spark-line"]) == 2
    assert segments(row["flag_rate"]["paths"]["spark-faint"]) == 1


def test_it_says_how_long_a_device_has_been_silent(viewer):
    metric(DAY)
    metric(DAY, "cam-a")
    metric(DAY - dt.timedelta(days=3), "cam-b")
    Device.objects.filter(name="cam-a").update(last_day=DAY)
    Device.objects.filter(name="cam-b").update(last_day=DAY - dt.timedelta(days=3))
    rows = page(viewer).rows
    assert "silent" not in text(rows["cam-a"]["dev-seen"])
    assert "silent for 3 days" in text(rows["cam-b"]["dev-seen"])
    assert f"no images on {DAY.isoformat()}" in text(rows["cam-b"]["flag_rate"])


def test_it_links_each_device_to_its_overview(viewer):
    metric(DAY)
    metric(DAY, "gate 7/north")
    row = page(viewer, days="90").rows["gate 7/north"]
    response = viewer.get(row["name"]["href"])
    assert response.status_code == 200
    assert response.context["device"] == "gate 7/north" and response.context["range_days"] == 90


def test_it_sorts_by_each_column(viewer):
    metric(DAY)
    flagged = {"cam-a": 30, "cam-b": 5, "cam-c": 12}
    images = {"cam-a": 120, "cam-b": 300, "cam-c": 80}
    fp = {"cam-a": 1, "cam-b": 10, "cam-c": 4}  # of 50 labelled genuine each
    low = {"cam-a": 8, "cam-b": 2, "cam-c": 20}  # low quality of 100 scored each
    for name, k in flagged.items():
        counts = {"live": 90, "attack": 10, "low_quality": low[name]}
        metric(DAY, name, flagged=k, images=images[name], genuine=50, fp=fp[name], counts=counts)
    metric(DAY - dt.timedelta(days=2), "cam-d")  # nothing on the latest day: last whatever the order
    Device.objects.update(last_day=DAY)
    Device.objects.filter(name="cam-d").update(last_day=DAY - dt.timedelta(days=2))
    worst_first = sorted(flagged, key=lambda n: -flagged[n]) + ["cam-d"]
    assert list(page(viewer, sort="-flag_rate").rows) == worst_first
    assert list(page(viewer, sort="flag_rate").rows) == worst_first[2::-1] + ["cam-d"]
    assert list(page(viewer, sort="-name").rows) == ["cam-d", "cam-c", "cam-b", "cam-a"]
    # cam-d had no image on the latest day: 0 images, the fewest
    assert list(page(viewer, sort="-images").rows) == sorted(images, key=lambda n: -images[n]) + ["cam-d"]
    assert list(page(viewer, sort="last_seen").rows) == ["cam-d", "cam-a", "cam-b", "cam-c"]
    # the heading links: a first click sorts the worst first, the next one reverses
    p = page(viewer)
    assert "sort=-flag_rate" in p.headers["flag_rate"] and "sort=name" not in p.headers["flag_rate"]
    assert "sort=-name" in p.headers["name"]
    assert "sort=flag_rate" in page(viewer, sort="-flag_rate").headers["flag_rate"]
    for column, k in (("fpr", fp), ("low_quality", low)):
        p = page(viewer, sort=column)
        assert p.errors == []
        assert list(p.rows) == sorted(k, key=k.get) + ["cam-d"], column


def test_it_explains_a_bad_sort_or_range_instead_of_failing(viewer):
    metric(DAY)
    metric(DAY, "cam-b")
    metric(DAY, "cam-a")
    p = page(viewer, sort="colour", days="7")
    assert any("Unknown sort “colour”" in e for e in p.errors)
    assert any("Unknown range “7”" in e for e in p.errors)
    assert list(p.rows) == ["cam-a", "cam-b"]  # by name, the default


def test_it_shows_90_days_when_asked(viewer):
    for back in (0, 60):
        metric(DAY - dt.timedelta(days=back))
        metric(DAY - dt.timedelta(days=back), "cam-a", images=7 if back else 9)
    short, long = page(viewer).rows["cam-a"], page(viewer, days="90").rows["cam-a"]
    assert "30 days: 9 in all" in text(short["images"])
    assert "90 days: 16 in all" in text(long["images"])


def test_it_reads_200_devices_over_90_days_in_a_constant_number_of_queries(viewer, django_assert_max_num_queries):
    rng = random.Random(3)
    devices = Device.objects.bulk_create([Device(name=f"dev-{i:03d}", last_day=DAY) for i in range(200)])
    rows = []
    for back in range(90):
        day = DAY - dt.timedelta(days=back)
        rows.append(DailyMetric(day=day, images=200 * 50, counts={}))
        for d in devices:
            scored = rng.randint(20, 80)
            rows.append(
                DailyMetric(
                    day=day,
                    device=d,
                    images=scored + 3,
                    counts={"live": scored - 5, "attack": 5, "low_quality": 3},
                    scored=scored,
                    flagged=5,
                    genuine=scored // 2,
                    fp=1,
                    all_scored=scored + 3,
                )
            )
    DailyMetric.objects.bulk_create(rows, batch_size=2000)
    with django_assert_max_num_queries(7):  # session, user, permissions; the page itself 3
        p = page(viewer, days="90", sort="-fpr")
    assert len(p.rows) == 200
