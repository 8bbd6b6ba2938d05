"""End to end in Debian's headless chromium (Playwright drives the system browser; nothing is
downloaded): log in, read the overview's Plotly chart, open a day gallery, filter, open an
image, step to the next one."""

import datetime as dt
import shutil

import pytest

import demo
from monitor import runs
from monitor.models import Image
from tests.conftest import log_in, make_user, wait_for_trend_chart

DAY = dt.date.today() - dt.timedelta(days=1)


@pytest.fixture
def scored_days(demo_ensemble, settings, tmp_path):
    out = tmp_path / "gen"
    demo.generate_inbox(out, days=2, per_day=30, seed=21, end_day=DAY)
    shutil.copytree(out, settings.INBOX_DIR, dirs_exist_ok=True)
    for day in (DAY - dt.timedelta(days=1), DAY):
        runs.run_day(day)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_walks_from_login_to_the_next_image(live_server, browser_page, scored_days):
    make_user("vera")
    page = browser_page

    page.goto(live_server.url + "/")
    assert "/login/" in page.url
    log_in(page, "vera")
    page.wait_for_url(live_server.url + "/")

    # the overview's trend chart is drawn by Plotly and holds one point per day
    wait_for_trend_chart(page)
    assert page.locator(".js-plotly-plot .main-svg").count() > 0

    page.click(f"a[href='/days/{DAY.isoformat()}/']")
    page.wait_for_selector(".thumbs .thumb")
    all_count = page.locator(".thumbs .thumb").count()
    device = Image.objects.filter(day=DAY).values_list("device__name", flat=True).first()
    page.select_option("select[name=device]", device)
    page.click("#filters button[type=submit]")
    page.wait_for_url(f"**device={device}**")
    shown = page.locator(".thumbs .thumb").count()
    assert 0 < shown <= all_count
    assert shown == min(60, Image.objects.filter(day=DAY, device__name=device).count())

    page.locator(".thumbs .thumb a").first.click()
    page.wait_for_selector("#original")
    first_url = page.url
    assert page.evaluate("document.getElementById('original').naturalWidth") > 0  # the protected file loaded
    page.click("#next")
    page.wait_for_url(lambda url: url != first_url and "/images/" in url)
    assert f"device={device}" in page.url  # the filter travels along
    assert page.locator("h1").inner_text().startswith(f"{DAY.isoformat()}/{device}/")
