"""The admin labelling pages (issue 5): bulk labelling on the grid, the per-image label form, the
CSV import with its preview, and the export of the audit trail."""

import csv
import datetime as dt
import io
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template.loader import render_to_string
from django.urls import reverse

from monitor import tasks
from monitor.models import Image, LabelEvent
from monitor.views import labelling as views
from tests import factories as f
from tests.conftest import log_in, make_user

DAY = dt.date(2026, 11, 20)
GRID = reverse("labelling:grid", args=[DAY])


@pytest.fixture(autouse=True)
def recomputes(monkeypatch):
    """The days handed to tasks.recompute_day.delay (not run)."""
    calls = []
    monkeypatch.setattr(tasks.recompute_day, "delay", lambda day: calls.append(day))
    return calls


@pytest.fixture
def admin_client(client, personas):
    client.force_login(personas["admin"])
    return client


def ids_on(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'name="ids" value="(\d+)"', html)]


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def hidden_fields(html: str) -> dict[str, str]:
    """The hidden inputs of the bulk form (the filter it carries, the query to come back to)."""
    form = html[html.index('id="bulk"') :]
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form))


def post_filter(client, query: str, action: str, **extra):
    """POST the bulk form of the grid page at `query` with "all matching the filter"."""
    html = client.get(f"{GRID}?{query}").content.decode()
    data = {k: v.replace("&amp;", "&") for k, v in hidden_fields(html).items()}
    data.pop("csrfmiddlewaretoken", None)
    return client.post(GRID, {**data, "scope": "filter", "action": action, **extra}, follow=True)


# --- who may label -----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["reviewer", "viewer", "nobody"])
def test_only_admins_reach_any_labelling_url(client, personas, role):
    im = f.image(score=0.2)
    client.force_login(personas[role])
    urls = [
        reverse("labelling:index"),
        GRID,
        reverse("labelling:image", args=[im.pk]),
        reverse("labelling:import"),
        reverse("labelling:export"),
    ]
    for url in urls:
        for method in ("get", "post"):
            response = getattr(client, method)(url, {"ids": [im.pk], "action": "genuine", "text": "sha256,label\n"})
            assert response.status_code == 403, (role, method, url, response.status_code)
    assert not LabelEvent.objects.exists()
    assert Image.objects.get(pk=im.pk).label == ""


def test_anonymous_visitors_are_sent_to_the_login(client):
    for url in (GRID, reverse("labelling:import"), reverse("labelling:export")):
        response = client.post(url)
        assert response.status_code == 302 and "login" in response["Location"]


def test_admins_see_the_pages(admin_client):
    f.image(score=0.2)
    for url in (reverse("labelling:index"), GRID, reverse("labelling:import"), reverse("labelling:export")):
        assert admin_client.get(url).status_code == 200, url
    assert admin_client.get(reverse("labelling:image", args=[1])).status_code == 405  # POST only


# --- the grid ------------------------------------------------------------------------------------------


def test_the_grid_offers_the_attack_types_in_menu_order(admin_client):
    f.image(score=0.2)
    html = admin_client.get(GRID).content.decode()
    bulk = html[html.index('id="bulk"') :]
    actions = re.findall(r'<option value="(genuine|attack:[\w-]*)"', bulk)
    assert actions == ["genuine", "attack:print", "attack:replay", "attack:mask", "attack:other", "attack:"]
    assert "labelling.js" in html


def test_it_labels_the_selected_images(admin_client, personas, recomputes):
    a, b, c = f.image(score=0.2), f.image(score=0.3), f.image(score=0.4)
    response = admin_client.post(
        GRID,
        {"ids": [a.pk, b.pk], "action": "attack:replay", "note": "screen replays", "query": "sort=score&label=none"},
    )
    assert response.status_code == 302
    assert response["Location"] == f"{GRID}?sort=score&label=none"  # back to the same filter and page

    assert set(Image.objects.filter(pk__in=[a.pk, b.pk]).values_list("label", "attack_type")) == {("attack", "replay")}
    assert Image.objects.get(pk=c.pk).label == ""
    events = LabelEvent.objects.order_by("image_id")
    assert [(e.image_id, e.old_label, e.new_label, e.new_attack_type) for e in events] == [
        (a.pk, "", "attack", "replay"),
        (b.pk, "", "attack", "replay"),
    ]
    assert {(e.user, e.source, e.note) for e in events} == {(personas["admin"], "labelling", "screen replays")}

    page = admin_client.get(response["Location"])
    assert "2 images labelled attack (replay)" in " ".join(messages_of(page))


def test_it_labels_genuine_and_says_how_many_changed(admin_client):
    a, b = f.image(score=0.2), f.image(score=0.3, label="genuine")
    response = admin_client.post(GRID, {"ids": [a.pk, b.pk], "action": "genuine"}, follow=True)
    text = " ".join(messages_of(response))
    assert "1 images labelled genuine" in text and "1 of 2 selected images already had that label" in text
    assert LabelEvent.objects.get().image_id == a.pk


def test_it_refuses_images_of_another_day_or_no_selection(admin_client):
    other = f.image(score=0.2, day="2026-11-21")
    response = admin_client.post(GRID, {"ids": [other.pk], "action": "genuine"}, follow=True)
    assert "not images of 2026-11-20" in " ".join(messages_of(response))
    response = admin_client.post(GRID, {"action": "genuine"}, follow=True)
    assert "select images first" in " ".join(messages_of(response))
    response = admin_client.post(GRID, {"ids": [other.pk], "action": "attack:bogus"}, follow=True)
    assert "Nothing labelled" in " ".join(messages_of(response))
    assert not LabelEvent.objects.exists()
    assert admin_client.post(GRID, {"ids": ["x"], "action": "genuine"}).status_code == 400


def test_it_labels_all_images_matching_the_filter_across_pages(admin_client, monkeypatch, personas):
    monkeypatch.setattr("monitor.browse.PAGE_SIZE", 4)
    wanted = [f.image(score=0.1 + 0.01 * i, device_name="gate-1") for i in range(11)]
    other_device = [f.image(score=0.15, device_name="phone-9") for _ in range(3)]
    labelled = f.image(score=0.12, device_name="gate-1", label="genuine")
    other_day = f.image(score=0.1, device_name="gate-1", day="2026-11-21")

    query = "device=gate-1&label=none&category=attack&sort=score"
    html = admin_client.get(f"{GRID}?{query}").content.decode()
    assert len(ids_on(html)) == 4  # one page of four shown ...
    assert "all 11 images matching the filter" in html  # ... eleven matching

    response = post_filter(admin_client, query, "attack:print", note="gate 1 session")
    assert "11 images labelled attack (print)" in " ".join(messages_of(response))

    assert set(Image.objects.filter(label="attack").values_list("pk", flat=True)) == {im.pk for im in wanted}
    assert not Image.objects.filter(pk__in=[im.pk for im in other_device] + [other_day.pk]).exclude(label="").exists()
    assert Image.objects.get(pk=labelled.pk).label == "genuine"
    events = LabelEvent.objects.all()
    assert events.count() == 11
    assert {(e.user, e.source, e.note, e.new_attack_type) for e in events} == {
        (personas["admin"], "labelling", "gate 1 session", "print")
    }


def test_all_matching_ignores_the_page_cursor(admin_client, monkeypatch):
    monkeypatch.setattr("monitor.browse.PAGE_SIZE", 3)
    images = [f.image(score=0.1 + 0.01 * i) for i in range(8)]
    first = admin_client.get(f"{GRID}?sort=score").content.decode()
    after = re.search(r'href="\?([^"]*after=[^"]*)" rel="next"', first).group(1).replace("&amp;", "&")
    assert set(ids_on(admin_client.get(f"{GRID}?{after}").content.decode())) < {im.pk for im in images}

    post_filter(admin_client, after, "genuine")  # from page 2: still every matching image
    assert Image.objects.filter(label="genuine").count() == 8


def test_all_matching_is_capped(admin_client, monkeypatch):
    monkeypatch.setattr(views, "MAX_MATCHING", 5)
    for i in range(6):
        f.image(score=0.1 + 0.01 * i)
    html = admin_client.get(GRID).content.decode()
    assert "matches more than 5 images" in html
    response = admin_client.post(GRID, {"scope": "filter", "action": "genuine", "f-sort": "score"}, follow=True)
    assert "the filter matches 6 images and at most 5 can be labelled at once" in " ".join(messages_of(response))
    assert not LabelEvent.objects.exists()


def test_a_bad_filter_labels_nothing(admin_client):
    f.image(score=0.2)
    response = admin_client.post(
        GRID, {"scope": "filter", "action": "genuine", "f-min_score": "0.9", "f-max_score": "0.1"}, follow=True
    )
    assert "the filter is not valid" in " ".join(messages_of(response))
    assert not LabelEvent.objects.exists()


# --- one image -------------------------------------------------------------------------------------------


def test_it_labels_one_image_and_returns_to_its_page(admin_client, personas):
    im = f.image(score=0.2)
    url = reverse("labelling:image", args=[im.pk])
    response = admin_client.post(url, {"action": "attack:mask", "note": "silicone", "query": "sort=-score"})
    assert response.status_code == 302
    assert response["Location"] == reverse("image", args=[im.pk]) + "?sort=-score"
    im.refresh_from_db()
    assert (im.label, im.attack_type) == ("attack", "mask")
    e = LabelEvent.objects.get()
    assert (e.user, e.source, e.note, e.old_label, e.new_label) == (
        personas["admin"],
        "labelling",
        "silicone",
        "",
        "attack",
    )

    admin_client.post(url, {"action": "genuine"})
    assert Image.objects.get(pk=im.pk).label == "genuine"
    assert LabelEvent.objects.count() == 2


def test_the_label_form_include_shows_the_history_and_the_form_to_admins_only(rf, personas):
    im = f.image(score=0.2)
    admin_request = rf.get("/")
    admin_request.user = personas["admin"]
    from monitor import labels

    labels.set_labels([im.pk], "attack", "print", user=personas["admin"], source="labelling", note="first")
    labels.set_labels([im.pk], "genuine", user=personas["admin"], source="labelling", note="second")
    im.refresh_from_db()

    def render(user):
        request = rf.get("/")
        request.user = user
        return render_to_string(
            "monitor/_label_form.html", {"im": im, **views.detail_context(im), "filter_query": "sort=score"}, request
        )

    html = render(personas["admin"])
    assert f'action="{reverse("labelling:image", args=[im.pk])}"' in html
    assert 'value="attack:replay"' in html and 'value="genuine" disabled' in html
    assert html.index("second") < html.index("first")  # newest first
    assert "attack (print) → genuine" in html and "unlabelled → attack (print)" in html

    html = render(personas["viewer"])
    assert "labelling/images" not in html
    assert "attack (print) → genuine" in html


# --- import ------------------------------------------------------------------------------------------------


def test_the_import_preview_writes_nothing_and_confirm_applies(admin_client, personas):
    a, b, same = f.image(score=0.2), f.image(score=0.8, label="attack"), f.image(score=0.9, label="genuine")
    text = f"sha256,label,attack_type\n{a.sha256},attack,print\n{b.sha256},genuine,\n{same.sha256},genuine,\n"
    upload = SimpleUploadedFile("batch.csv", text.encode(), content_type="text/csv")

    response = admin_client.post(reverse("labelling:import"), {"file": upload})
    html = response.content.decode()
    assert response.status_code == 200
    assert not LabelEvent.objects.exists()
    assert Image.objects.get(pk=a.pk).label == ""
    assert response.context["n_changes"] == 2
    changes = re.findall(
        r'<tr data-pk="(\d+)"><td class="num">(\d+)</td>.*?<td>([^<]*)</td><td>→</td><td>([^<]*)</td>', html
    )
    assert changes == [(str(a.pk), "2", "unlabelled", "attack (print)"), (str(b.pk), "3", "attack", "genuine")]
    assert 'name="confirm"' in html
    token = re.search(r'name="token" value="([^"]+)"', html).group(1)

    response = admin_client.post(reverse("labelling:import"), {"confirm": "1", "token": token}, follow=True)
    assert "2 images labelled from batch.csv" in " ".join(messages_of(response))
    assert (Image.objects.get(pk=a.pk).label, Image.objects.get(pk=a.pk).attack_type) == ("attack", "print")
    assert Image.objects.get(pk=b.pk).label == "genuine"
    assert {(e.source, e.user) for e in LabelEvent.objects.all()} == {("import", personas["admin"])}
    assert LabelEvent.objects.count() == 2

    # the same confirm again does nothing
    response = admin_client.post(reverse("labelling:import"), {"confirm": "1", "token": token}, follow=True)
    assert "out of date" in " ".join(messages_of(response))
    assert LabelEvent.objects.count() == 2


def test_malformed_lines_are_listed_and_no_confirm_is_offered(admin_client):
    good = f.image(score=0.2)
    text = (
        "sha256,label,attack_type\n"
        f"{good.sha256},attack,print\n"
        "deadbeef,attack,print\n"
        f"{good.sha256},maybe,\n"
        f"{good.sha256},attack\n"
        f"{good.sha256},attack,lasers\n"
    )
    response = admin_client.post(reverse("labelling:import"), {"text": text})
    html = response.content.decode()
    lines = [int(n) for n in re.findall(r'class="error-line" data-line="(\d+)"', html)]
    assert lines == [3, 4, 5, 6]
    assert "unknown image" in html and "unknown label" in html and "expected 3 columns" in html and "lasers" in html
    assert 'name="confirm"' not in html
    assert not LabelEvent.objects.exists() and Image.objects.get(pk=good.pk).label == ""

    # a confirm posted anyway (no pending import) writes nothing
    admin_client.post(reverse("labelling:import"), {"confirm": "1", "token": "guess"})
    assert not LabelEvent.objects.exists()


def test_the_import_needs_a_file_or_text(admin_client):
    response = admin_client.post(reverse("labelling:import"), {})
    assert response.status_code == 400
    assert "choose a CSV file" in response.content.decode()


def test_a_confirm_rechecks_the_file(admin_client, personas):
    im = f.image(score=0.2)
    text = f"sha256,label\n{im.sha256},genuine\n"
    html = admin_client.post(reverse("labelling:import"), {"text": text}).content.decode()
    token = re.search(r'name="token" value="([^"]+)"', html).group(1)
    Image.objects.filter(pk=im.pk).delete()  # gone between the preview and the confirm
    response = admin_client.post(reverse("labelling:import"), {"confirm": "1", "token": token})
    assert response.status_code == 409
    assert "unknown image" in response.content.decode()
    assert not LabelEvent.objects.exists()


# --- export -------------------------------------------------------------------------------------------------


def test_the_export_holds_the_audit_rows(admin_client, personas):
    a, b = f.image(score=0.2), f.image(score=0.3, day="2026-11-25")
    admin_client.post(GRID, {"ids": [a.pk], "action": "attack:print", "note": "bulk"})
    admin_client.post(reverse("labelling:image", args=[b.pk]), {"action": "genuine"})

    response = admin_client.get(reverse("labelling:export"))
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["sha256"], r["new_label"], r["new_attack_type"], r["user"], r["source"], r["note"]) for r in rows] == [
        (a.sha256, "attack", "print", "admin-user", "labelling", "bulk"),
        (b.sha256, "genuine", "", "admin-user", "labelling", ""),
    ]

    response = admin_client.get(reverse("labelling:export"), {"day_from": "2026-11-21", "day_to": "2026-11-30"})
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["sha256"] for r in rows] == [b.sha256]
    assert "labels-from-2026-11-21-to-2026-11-30.csv" in response["Content-Disposition"]

    assert admin_client.get(reverse("labelling:export"), {"day_from": "yesterday"}).status_code == 400


# --- in the browser ------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_click_and_shift_click_select_in_the_browser(live_server, browser_page):
    make_user("ada", "admin")
    images = [f.image(score=0.1 + 0.01 * i) for i in range(6)]  # sorted by score: page order = creation order
    page = browser_page
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(live_server.url + GRID)
    log_in(page, "ada")
    page.wait_for_selector(".lab-tile")

    tile = ".lab-tile:nth-child({}) .nothumb"
    page.click(tile.format(2))
    page.click(tile.format(5), modifiers=["Shift"])  # 2..5
    page.click(tile.format(3))  # off again
    assert page.locator("#selected-count").inner_text() == "3"
    assert page.locator(".lab-tile.selected").count() == 3
    page.select_option("#action", "attack:replay")
    page.fill("input[name=note]", "browser")
    page.click("#apply")
    page.wait_for_selector(".msg-success")
    assert "3 images labelled attack (replay)" in page.locator(".messages").inner_text()

    labelled = set(Image.objects.filter(label="attack", attack_type="replay").values_list("pk", flat=True))
    assert labelled == {images[1].pk, images[3].pk, images[4].pk}
    assert set(LabelEvent.objects.values_list("source", "note", "user__username")) == {("labelling", "browser", "ada")}

    page.check("#select-all")  # every image matching the filter
    assert page.locator(".lab-tile.selected").count() == 6
    page.select_option("#action", "genuine")
    page.click("#apply")
    page.wait_for_selector(".msg-success")
    assert Image.objects.filter(label="genuine").count() == 6
