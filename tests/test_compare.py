"""The compare page (issue 6): two ensembles over the same images, their figures side by side."""

import datetime as dt
import re

import numpy as np
import pytest
from django.urls import reverse

from liveness import metrics
from monitor import compare
from monitor.models import ShadowScore
from tests import factories as f

DAYS = [dt.date(2026, 11, 18), dt.date(2026, 11, 19), dt.date(2026, 11, 20)]
URL = reverse("compare")


def shadow_score(image, ensemble, score):
    return ShadowScore.objects.create(
        image=image,
        ensemble=ensemble,
        day=image.day,
        scores={"m1": score},
        score=score,
        threshold=ensemble.threshold,
        decision="live" if score > ensemble.threshold else "attack",
    )


@pytest.fixture
def pair(db):
    """prod (active, t = 0.5) scored 70 images in production; cand (t = 0.4) shadow-scored them.
    Left out of the shared set: an image only prod scored, one outside the range, one only cand
    scored (its production ensemble is a third one). In: one image production scored with cand
    (when it was active) that prod shadow-scored later."""
    prod = f.ensemble("prod", threshold=0.5, active=True)
    cand = f.ensemble("cand", threshold=0.4, active=False)
    third = f.ensemble("third", threshold=0.5, active=False)
    rng = np.random.default_rng(3)
    shared = []
    for i in range(70):
        label = "genuine" if i < 40 else "attack" if i < 60 else ""
        live = label != "attack"
        sa = float(np.clip(rng.normal(0.7 if live else 0.3, 0.15), 0, 1))
        sb = float(np.clip(sa + rng.normal(0, 0.2), 0, 1))
        im = f.image(
            day=DAYS[i % 3],
            device_name="pad-01" if i % 2 else "gate-north",
            score=sa,
            label=label,
            attack_type="print" if label == "attack" else "",
            ensemble=prod,
            box_w=float(rng.integers(90, 200)),
            box_h=float(rng.integers(90, 200)),
        )
        shadow_score(im, cand, sb)
        shared.append((im, sa, sb))
    swapped = f.image(day=DAYS[0], score=0.2, label="genuine", ensemble=cand, box_w=150.0, box_h=150.0)
    shadow_score(swapped, prod, 0.95)
    shared.append((swapped, 0.95, 0.2))
    f.image(day=DAYS[1], score=0.6, label="genuine", ensemble=prod)  # only prod
    outside = f.image(day=dt.date(2026, 10, 1), score=0.6, label="genuine", ensemble=prod)
    shadow_score(outside, cand, 0.1)
    only_cand = f.image(day=DAYS[2], score=0.6, label="attack", ensemble=third)
    shadow_score(only_cand, cand, 0.1)
    return prod, cand, shared


def query(**params):
    return {"a": "prod", "b": "cand", "from": DAYS[0].isoformat(), "to": DAYS[-1].isoformat(), **params}


@pytest.fixture
def viewer(client, personas):
    client.force_login(personas["viewer"])
    return client


def cell(page: str, side: str, fpr: float, field: str) -> str:
    row = re.search(rf'<tr data-target-fpr="{fpr}">(.*?)</tr>', page, re.S).group(1)
    td = re.search(rf'data-side="{side}" data-field="{field}"[^>]*>(.*?)</td>', row, re.S).group(1)
    return re.sub(r"<[^>]+>", "", td).strip()


def test_it_compares_both_ensembles_on_the_same_images(viewer, pair):
    prod, cand, shared = pair
    page = viewer.get(URL, query()).content.decode()

    assert "A: prod" in page and "B: cand" in page
    assert 'data-images="71" data-genuine="41" data-attacks="20"' in page
    c = compare.compare(prod, cand, DAYS[0], DAYS[-1])
    assert c.images == len(c.a.scores) == len(c.b.scores) == 71
    assert sorted(c.ids.tolist()) == sorted(im.pk for im, _, _ in shared)


@pytest.mark.parametrize("fpr", [0.001, 0.01])
def test_it_shows_tpr_and_fpr_as_computed_directly(viewer, pair, fpr):
    _, _, shared = pair
    page = viewer.get(URL, query()).content.decode()

    labelled = [(im, sa, sb) for im, sa, sb in shared if im.label]
    is_attack = np.array([im.label == "attack" for im, _, _ in labelled])
    for side, scores in (("a", [sa for _, sa, _ in labelled]), ("b", [sb for _, _, sb in labelled])):
        p = metrics.threshold_at_fpr(scores, is_attack, fpr)
        tpr, fpr_rate = metrics.wilson(p.tp, p.attacks), metrics.wilson(p.fp, p.genuine)
        assert cell(page, side, fpr, "threshold") == f"{p.threshold:.6g}"
        assert cell(page, side, fpr, "tpr").startswith(
            f"{100 * p.tpr:.2f}% ({p.tp}/{p.attacks}) [{100 * tpr.low:.2f}, {100 * tpr.high:.2f}]"
        )
        assert cell(page, side, fpr, "fpr") == (
            f"{100 * p.fpr:.3f}% ({p.fp}/{p.genuine}) [{100 * fpr_rate.low:.2f}, {100 * fpr_rate.high:.2f}]"
        )
    assert "too few" in cell(page, "a", fpr, "tpr")  # 20 attacks: greyed out
    assert "too few" not in cell(page, "a", fpr, "fpr")  # 41 genuine


def test_it_counts_the_decisions_at_each_own_threshold(viewer, pair):
    prod, cand, shared = pair
    page = viewer.get(URL, query()).content.decode()

    sa = np.array([s for _, s, _ in shared])
    sb = np.array([s for _, _, s in shared])
    labelled = np.array([bool(im.label) for im, _, _ in shared])
    is_attack = np.array([im.label == "attack" for im, _, _ in shared])
    differ = int(((sa <= 0.5) != (sb <= 0.4)).sum())
    assert f'data-differ="{differ}"' in page and differ > 0
    c = compare.compare(prod, cand, DAYS[0], DAYS[-1])
    # the service's arrays are in id order, the fixture's in creation order: compare (id, score) pairs
    assert sorted(zip(c.ids.tolist(), c.a.scores.tolist(), strict=True)) == sorted((im.pk, s) for im, s, _ in shared)
    assert c.a.flagged == int((sa <= 0.5).sum()) and c.b.flagged == int((sb <= 0.4).sum())
    assert c.a.at_threshold == metrics.confusion(sa[labelled], is_attack[labelled], 0.5)
    assert c.b.at_threshold == metrics.confusion(sb[labelled], is_attack[labelled], 0.4)


def test_it_lists_the_images_where_they_disagree_most(viewer, pair):
    _, _, shared = pair
    page = viewer.get(URL, query()).content.decode()

    listed = re.findall(r'data-image="(\d+)" data-score-a="([\d.]+)" data-score-b="([\d.]+)"', page)
    assert len(listed) == compare.DISAGREEMENTS_SHOWN
    diffs = [abs(float(a) - float(b)) for _, a, b in listed]
    assert diffs == sorted(diffs, reverse=True)
    expected = sorted(shared, key=lambda t: (-abs(t[1] - t[2]), t[0].pk))[: compare.DISAGREEMENTS_SHOWN]
    assert [int(pk) for pk, _, _ in listed] == [im.pk for im, _, _ in expected]
    assert [(a, b) for _, a, b in listed] == [(f"{sa:.4f}", f"{sb:.4f}") for _, sa, sb in expected]
    top = expected[0][0]
    assert reverse("image", args=[top.pk]) in page
    assert top.pk == shared[-1][0].pk  # the swapped image: 0.95 vs 0.2


def test_it_keeps_to_the_device_and_the_range(viewer, pair):
    page = viewer.get(URL, query(device="pad-01")).content.decode()
    assert 'data-images="35"' in page and "from pad-01" in page
    page = viewer.get(URL, query(**{"from": DAYS[1].isoformat()})).content.decode()
    assert 'data-images="46"' in page


def test_it_defaults_to_the_active_and_the_latest_shadow_scored_ensemble(viewer, pair):
    page = viewer.get(URL).content.decode()
    assert "A: prod" in page and "B: cand" in page
    assert f'value="{DAYS[-1].isoformat()}"' in page and f'value="{(DAYS[-1] - dt.timedelta(days=29))}"' in page
    assert 'data-images="71"' in page  # 2026-10-01 is out of the last 30 days


def test_it_refuses_the_same_ensemble_twice(viewer, pair):
    response = viewer.get(URL, query(b="prod"))
    assert response.status_code == 400 and "pick two different ensembles" in response.content.decode()


def test_it_says_when_the_range_has_no_shared_images(viewer, pair):
    page = viewer.get(URL, query(**{"from": "2026-01-01", "to": "2026-01-31"})).content.decode()
    assert 'id="compare-empty"' in page and "has scores from both" in page
    assert "score_day DAY --ensemble NAME" in page


def test_it_says_how_to_make_shadow_scores_when_there_are_none(viewer, db):
    f.ensemble("prod", threshold=0.5, active=True)
    f.ensemble("cand", threshold=0.4, active=False)
    f.image(day=DAYS[0], score=0.6, ensemble=f.ensemble("prod"))

    page = viewer.get(URL).content.decode()

    assert "No shadow scores yet" in page
    assert "python manage.py score_day DAY --ensemble NAME" in page and reverse("runs") in page


def test_it_says_that_comparing_needs_two_ensembles(viewer, db):
    f.ensemble("prod", threshold=0.5, active=True)
    page = viewer.get(URL).content.decode()
    assert "Comparing needs two ensembles" in page


def test_it_lets_viewers_in_and_sends_anonymous_visitors_to_login(client, personas, pair):
    response = client.get(URL)
    assert response.status_code == 302 and "login" in response["Location"]
    client.force_login(personas["viewer"])
    response = client.get(URL)
    assert response.status_code == 200 and 'href="/compare/"' in response.content.decode()  # and in the nav


def at_threshold_row(page: str, side: str) -> str:
    row = re.search(rf'<tr data-side="{side}" data-what-if="[01]">(.*?)</tr>', page, re.S).group(1)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip()


def test_it_says_a_past_day_is_a_what_if_after_the_threshold_changed(viewer, pair):
    prod, _, shared = pair
    prod.threshold = 0.6  # an admin raised it after the days were decided at 0.5
    prod.save()

    page = viewer.get(URL, query()).content.decode()

    # independent count of what production decided: the 70 images prod decided at 0.5, and the
    # swapped image decided by cand at 0.4 (score 0.2: flagged)
    decided = [sa <= 0.5 for _, sa, _ in shared[:70]] + [0.2 <= 0.4]
    at_now = sum(sa <= 0.6 for _, sa, _ in shared)
    assert at_now != sum(decided)
    a = at_threshold_row(page, "a")
    assert "what-if for 71 of 71 images" not in a and "what-if: prod at 0.6 (its threshold now)" in a
    assert f"{at_now} {sum(decided)}" in a  # flagged at 0.6, then production's flagged as decided
    assert f'id="production" data-flagged="{sum(decided)}"' in page
    n_prod = sum(decided[:70])
    assert f"flagged {sum(decided)}</strong>; thresholds in force: prod at 0.5 (70 images, {n_prod} flagged), " in page
    assert "cand at 0.4 (1 image, 1 flagged)." in page


def test_it_says_which_figures_are_what_production_decided(viewer, pair):
    _, _, shared = pair
    # from the second day on, prod decided every image at its threshold now, 0.5
    page = viewer.get(URL, query(**{"from": DAYS[1].isoformat()})).content.decode()
    a = at_threshold_row(page, "a")
    assert 'data-side="a" data-what-if="0"' in page
    assert "as decided: production decided all 46 images with prod at 0.5" in a
    flagged = sum(sa <= 0.5 for im, sa, _ in shared if im.day >= DAYS[1])
    assert f"{flagged} {flagged}" in a
    # cand never ran in production on these days: its figures are a what-if, as its shadow run decided
    b = at_threshold_row(page, "b")
    assert "what-if: cand at 0.4 (its threshold now) applied to these scores; production decided none" in b
    shadow_flagged = sum(sb <= 0.4 for im, _, sb in shared if im.day >= DAYS[1])
    assert f"shadow runs decided cand at 0.4 (46 images, {shadow_flagged} flagged)" in b


def test_it_counts_partly_decided_sets_as_what_ifs(viewer, pair):
    # the whole range: the swapped image was decided by cand, so 1 of prod's 71 figures is a what-if
    page = viewer.get(URL, query()).content.decode()
    assert "what-if for 1 of 71 images: production decided 70 of them with prod at 0.5" in at_threshold_row(page, "a")
