"""End to end in Debian's headless chromium (Playwright drives the system browser; nothing is
downloaded): a reviewer works through five flagged images with the keyboard only (a verdict
per key, an attack type by digit, a skip, stepping back, an undo), then the stored labels and
the audit rows are checked in the database."""

import datetime as dt

import numpy as np
import pytest
from django.conf import settings

import demo
from monitor.models import Image, LabelEvent
from tests import factories as f
from tests.conftest import jpeg_bytes, make_user, put

DAY = dt.date.today() - dt.timedelta(days=1)


@pytest.fixture
def flagged_images(monkeypatch):
    """Five flagged images (threshold 0.5) with real files in the inbox, in queue order
    (same day, highest score first). The day's recomputation after each verdict is not run."""
    from monitor import tasks

    monkeypatch.setattr(tasks.recompute_day, "delay", lambda day: None)
    out = []
    for i, score in enumerate([0.45, 0.40, 0.30, 0.20, 0.10]):
        sample = demo.render_sample(np.random.default_rng([7, i]), label="genuine", face_size=200)
        data = jpeg_bytes(sample)
        name = f"face{i}.jpg"
        put(settings.INBOX_DIR, DAY.isoformat(), "phone-01", name, data)
        b = sample.box
        out.append(
            f.image(
                day=DAY,
                score=score,
                scores={"m1": score + 0.02, "m2": score - 0.02},
                path=f"{DAY.isoformat()}/phone-01/{name}",
                format="JPEG",
                file_size=len(data),
                width=sample.image.width,
                height=sample.image.height,
                box_x=b.x,
                box_y=b.y,
                box_w=b.w,
                box_h=b.h,
                face_size=min(b.w, b.h),
            )
        )
    return out


def shown(page) -> int | None:
    value = page.get_attribute("#review", "data-image")
    return int(value) if value else None


def press(page, key: str) -> int | None:
    """Press a key that submits a form or follows a link; the image shown after it."""
    with page.expect_navigation():
        page.keyboard.press(key)
    page.wait_for_selector("#review")
    return shown(page)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_reviewer_works_through_five_images_with_the_keyboard(live_server, browser_page, flagged_images):
    make_user("rita", "reviewer")
    one, two, three, four, five = (im.pk for im in flagged_images)
    page = browser_page

    page.goto(live_server.url + "/review/")
    assert "/login/" in page.url
    page.focus("input[name=username]")
    page.keyboard.type("rita")
    page.keyboard.press("Tab")
    page.keyboard.type("a-long-test-password")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_selector("#review")
    assert page.url.endswith("/review/")

    # the first image: large, loaded through the protected file view, with its face box
    assert shown(page) == one
    page.wait_for_function("() => document.getElementById('original').naturalWidth > 0")
    assert page.locator("svg.overlay rect.facebox").count() == 1
    assert " ".join(page.inner_text("#progress").split()).startswith("0 of 5 today")

    # ? shows the keys, and hides them again
    page.keyboard.press("?")
    assert page.is_visible("#review-help dl")
    page.keyboard.press("?")
    assert not page.is_visible("#review-help dl")

    assert press(page, "g") == two  # 1: genuine, a false positive
    assert " ".join(page.inner_text("#progress").split()).startswith("1 of 5 today")

    page.keyboard.press("2")  # 2: attack type replay (position 2), then a
    assert page.is_checked("#verdict-form input[value=replay]")
    assert press(page, "a") == three

    assert press(page, "a") == four  # 3: attack, no type ...
    assert press(page, "u") == three  # ... undone: the same image again
    assert "back in the queue" in page.inner_text("#review")
    assert press(page, "g") == four  # ... and judged genuine instead

    assert press(page, "s") == five  # 4: skipped for now
    assert press(page, "a") is None  # 5: attack; the skipped one is left out: the queue is empty
    assert page.is_visible("#queue-empty")

    assert press(page, "k") == five  # stepping back: the last image reviewed ...
    assert page.get_attribute("#review", "data-mode") == "history"
    assert press(page, "k") == four  # ... then the one skipped, which can still be judged
    page.keyboard.press("1")  # print
    assert press(page, "a") is None
    assert " ".join(page.inner_text("#progress").split()).startswith("5 of 5 today")

    # the stored labels
    labels = {pk: (label, atype) for pk, label, atype in Image.objects.values_list("pk", "label", "attack_type")}
    assert labels == {
        one: ("genuine", ""),
        two: ("attack", "replay"),
        three: ("genuine", ""),
        four: ("attack", "print"),
        five: ("attack", ""),
    }
    assert set(Image.objects.values_list("reviewed_by__username", flat=True)) == {"rita"}
    assert not Image.objects.filter(reviewed_at__isnull=True).exists()
    assert not Image.objects.filter(review_claimed_by__isnull=False).exists()

    # the audit rows: one per verdict, the undone one marked, the undo itself recorded
    events = list(
        LabelEvent.objects.order_by("id").values_list(
            "image_id", "old_label", "new_label", "new_attack_type", "source", "user__username", "note", "undone"
        )
    )
    assert events == [
        (one, "", "genuine", "", "review", "rita", "", False),
        (two, "", "attack", "replay", "review", "rita", "", False),
        (three, "", "attack", "", "review", "rita", "", True),
        (three, "attack", "", "", "review", "rita", "undo", False),
        (three, "", "genuine", "", "review", "rita", "", False),
        (five, "", "attack", "", "review", "rita", "", False),
        (four, "", "attack", "print", "review", "rita", "", False),
    ]
