"""Charts and alerts lead to "what changed", in Debian's headless chromium (Playwright drives the
system browser): a click on a trend point opens that day's explanation (with the overview's
device filter), an alert's "What changed" link opens its day's, and the top slice's gallery link
shows exactly that slice's images.

The data: three devices over a 14-day window and the day after it, every device flagging 5 of its
50 images a day, except cam-b on the last day, which flags 30: one planted cause."""

import datetime as dt
import random
import re

import pytest
from django.db import transaction

from monitor import alerts, daily
from monitor.models import Alert, Image
from tests import factories as f
from tests.conftest import log_in, wait_for_trend_chart
from tests.test_devices_page import wilson_text

DAY = dt.date.today() - dt.timedelta(days=1)
WINDOW = 14
DEVICES = ("cam-a", "cam-b", "cam-c")
PER_DAY, FLAGGED, PLANTED = 50, 5, 30
CAUSE = "cam-b"


def _image(rng: random.Random, day: dt.date, device: str, flagged: bool, ens) -> Image:
    """A genuine capture with varied attributes, flagged (attack) or not; the planted cause is
    the device alone, so every other attribute is drawn the same way on every device and day."""
    score = rng.uniform(0.05, 0.45) if flagged else rng.uniform(0.55, 0.99)
    spread = rng.uniform(0, 0.04)
    width, height = rng.choice([(640, 480), (1280, 720)])
    hour, minute = rng.randint(7, 20), rng.randint(0, 59)
    return f.image(
        day=day,
        device_name=device,
        score=score,
        scores={"m1": score - spread, "m2": score + spread},
        label="genuine",
        ensemble=ens,
        captured_at=dt.datetime.combine(day, dt.time(hour, minute), tzinfo=dt.UTC),
        face_size=rng.uniform(110, 260),
        site=rng.choice(["north", "south"]),
        format=rng.choice(["JPEG", "PNG"]),
        width=width,
        height=height,
        box_source=rng.choice(["sidecar", "detector"]),
    )


@pytest.fixture
def planted(db):
    """The window and the day with the planted cause, each day's figures, slices and alerts
    computed as a finished run computes them."""
    rng = random.Random(11)
    ens = f.ensemble("demo", threshold=0.5)
    days = [DAY - dt.timedelta(days=back) for back in range(WINDOW, -1, -1)]
    with transaction.atomic():
        for day in days:
            for device in DEVICES:
                flagged = PLANTED if (day == DAY and device == CAUSE) else FLAGGED
                for i in range(PER_DAY):
                    _image(rng, day, device, i < flagged, ens)
    for day in days:
        daily.compute_day(day)
        alerts.evaluate_day(day)
    return days


def log_in_as_viewer(page, live_server, personas) -> None:
    page.goto(live_server.url + "/")
    log_in(page, personas["viewer"].username)
    page.wait_for_url(live_server.url + "/")


def hover_last_point(page, chart: str) -> tuple[float, float]:
    """Move the pointer onto the latest day's point of a rate chart, where the browser draws it
    (Plotly picks the point under the pointer, as for a user), and wait for its hover label."""
    point = page.locator(f"{chart} .scatterlayer .points path").last
    point.scroll_into_view_if_needed()
    box = point.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 5, y)
    page.mouse.move(x, y, steps=3)
    page.wait_for_selector(f"{chart} .hoverlayer .hovertext")
    return x, y


def click_last_point(page, chart: str) -> None:
    page.mouse.click(*hover_last_point(page, chart))


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_opens_the_days_explanation_from_a_trend_point(live_server, browser_page, personas, planted):
    page = browser_page
    log_in_as_viewer(page, live_server, personas)
    page.goto(f"{live_server.url}/?device={CAUSE}")
    wait_for_trend_chart(page)

    click_last_point(page, "#chart-flag_rate")
    page.wait_for_url(f"**/days/{DAY.isoformat()}/explain?**")
    query = page.url.split("?", 1)[1]
    assert sorted(query.split("&")) == [f"device={CAUSE}", "measure=flag_rate"]

    # the FPR chart opens the FPR explanation; without a device filter none is passed
    page.goto(live_server.url + "/")
    wait_for_trend_chart(page)
    click_last_point(page, "#chart-fpr")
    page.wait_for_url(f"**/days/{DAY.isoformat()}/explain?measure=fpr")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_shows_the_points_counts_and_interval_on_hover(live_server, browser_page, personas, planted):
    page = browser_page
    log_in_as_viewer(page, live_server, personas)
    page.goto(f"{live_server.url}/?device={CAUSE}")
    wait_for_trend_chart(page)
    hover_last_point(page, "#chart-flag_rate")
    hover = page.locator("#chart-flag_rate .hoverlayer .hovertext").text_content()
    assert f"({PLANTED} / {PER_DAY})" in hover
    assert wilson_text(PLANTED, PER_DAY) in hover
    assert "what changed" in hover


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_leads_from_an_alert_to_the_explanation_and_the_slices_images(live_server, browser_page, personas, planted):
    alert = Alert.objects.get(rule=Alert.FLAG_RATE, last_day=DAY)  # all devices: cam-b alone has too few
    page = browser_page
    log_in_as_viewer(page, live_server, personas)

    page.click(f"tr[data-alert='{alert.pk}'] a.alert-explain")
    page.wait_for_url(f"**/days/{DAY.isoformat()}/explain**")
    assert "measure=flag_rate" in page.url
    top = page.locator("#slices tr.slice").first
    assert (top.get_attribute("data-dims"), top.get_attribute("data-value")) == ("device", CAUSE)

    top.locator("a.slice-gallery").click()
    page.wait_for_url(f"**/days/{DAY.isoformat()}/?**")
    page.wait_for_selector(".thumbs .thumb")
    shown = {
        int(re.search(r"/images/(\d+)/", href).group(1))
        for href in page.locator(".thumbs .thumb a").evaluate_all("els => els.map(a => a.getAttribute('href'))")
    }
    expected = set(Image.objects.filter(day=DAY, device__name=CAUSE).values_list("pk", flat=True))
    assert len(expected) == PER_DAY
    assert shown == expected
