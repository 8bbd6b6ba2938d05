"""The pages work under the content security policy, in Debian's headless chromium: the overview
draws its Plotly charts, the gallery shows its thumbnails, the image page its protected
original, the review queue its image and keys, with no CSP violation reported. A probe shows the
policy is really enforced (an injected inline script does not run)."""

import datetime as dt
import shutil

import pytest

import demo
from monitor import runs
from monitor.models import Image
from tests.conftest import log_in, make_user, wait_for_trend_chart

DAY = dt.date.today() - dt.timedelta(days=1)

# records every securitypolicyviolation event of the page (an init script runs outside the policy)
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(e.violatedDirective + " " + (e.blockedURI || "") + " " + (e.sourceFile || "") + ":" + e.lineNumber);
});
"""


@pytest.fixture
def scored_days(demo_ensemble, settings, tmp_path):
    out = tmp_path / "gen"
    demo.generate_inbox(out, days=2, per_day=30, seed=21, end_day=DAY)
    shutil.copytree(out, settings.INBOX_DIR, dirs_exist_ok=True)
    for day in (DAY - dt.timedelta(days=1), DAY):
        runs.run_day(day)


def violations(page, console: list[str]) -> list[str]:
    return page.evaluate("window.__csp") + [m for m in console if "Content Security Policy" in m]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_works_under_the_content_security_policy(live_server, browser_page, scored_days):
    make_user("ada", "admin", is_staff=True)
    page = browser_page
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text) if msg.type in ("error", "warning") else None)
    page.add_init_script(RECORD_VIOLATIONS)

    response = page.goto(live_server.url + "/login/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "'unsafe-eval'" not in policy
    assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    log_in(page, "ada")
    page.wait_for_url(live_server.url + "/")

    # the overview: Plotly draws the trend charts (one point per day) under the policy
    wait_for_trend_chart(page)
    assert page.locator(".js-plotly-plot .main-svg").count() > 0
    assert page.locator(".js-plotly-plot .scatterlayer .trace").count() > 0  # the lines were drawn
    page.hover(".js-plotly-plot .nsewdrag >> nth=0")  # the modebar and hover layer work too
    assert violations(page, console) == [], "CSP violations on the overview"

    # the policy is enforced, not only sent: an injected inline script does not run
    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.__ran = 1';"
        " document.body.appendChild(s); }"
    )
    page.wait_for_function("() => window.__csp.length > 0")
    assert page.evaluate("window.__ran") is None
    assert any(v.startswith("script-src") for v in page.evaluate("window.__csp"))
    console.clear()

    # the gallery: thumbnails through the protected view
    page.goto(f"{live_server.url}/days/{DAY.isoformat()}/")
    page.wait_for_selector(".thumbs .thumb img")
    page.wait_for_function("() => [...document.querySelectorAll('.thumbs img')].some(i => i.naturalWidth > 0)")
    # the image page: the original with its overlay
    first = Image.objects.filter(day=DAY).exclude(category="unreadable").order_by("pk").first()
    page.goto(f"{live_server.url}/images/{first.pk}/")
    page.wait_for_function("() => document.getElementById('original').naturalWidth > 0")
    assert violations(page, console) == [], "CSP violations on the gallery or the image page"

    # the review queue: the flagged image and the keyboard help (review.js) work
    page.goto(f"{live_server.url}/review/")
    if page.locator("#original").count():
        page.wait_for_function("() => document.getElementById('original').naturalWidth > 0")
    page.keyboard.press("?")
    assert violations(page, console) == [], "CSP violations on the review queue"
