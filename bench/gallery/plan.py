"""The requests: which pages are asked for (first pages of every tab, sort and filter; chains of
next pages; image details), in a random order drawn from one seed, and the warm-up before them."""

from __future__ import annotations

import random


def request_plan(total: int, rnd: random.Random, image_ids, device_names):
    """The measured requests: [(group, variant, kind, payload)] where kind is 'get' or 'chain'."""
    device = _device_picker(rnd, device_names)
    first_pages, fmap = _first_pages(rnd, device)
    n_first = round(total * 0.35)
    n_chain = round(total * 0.35)
    n_detail = total - n_first - n_chain
    jobs = _first_page_jobs(n_first, first_pages, fmap)
    jobs += _chain_jobs(n_chain, rnd, device_names)
    for _ in range(n_detail):
        pk, cat, dev = rnd.choice(image_ids)
        jobs.append(("image detail", "detail", "get", ("image", pk, _detail_query(rnd, cat, dev))))
    rnd.shuffle(jobs)
    warm = [(name, "get", ("gallery", q if q is not None else fmap[name]())) for name, q in first_pages]
    for _ in range(5):
        pk, cat, dev = rnd.choice(image_ids)
        warm.append(("detail", "get", ("image", pk, _detail_query(rnd, cat, dev))))
    return jobs, warm


def _device_picker(rnd: random.Random, device_names):
    """A random device, the busy ones more often (as the fill spreads the images)."""

    def device():
        return rnd.choices(device_names, weights=[1 / (i + 1) ** 0.8 for i in range(len(device_names))])[0]

    return device


def _first_pages(rnd: random.Random, device):
    """[(name, query or None)] of every tab, sort and filter, and {name: a fresh query} of the
    filters (None in the list: the filter's query is drawn when its request is planned)."""
    from monitor.browse import SORTS
    from monitor.models import CATEGORIES

    def score_range():
        lo = rnd.choice([0.2, 0.3, 0.4, 0.6])
        return {"min_score": f"{lo:.1f}", "max_score": f"{lo + 0.3:.1f}"}

    tabs = [("tab " + (c or "all"), {"category": c} if c else {}) for c in [""] + CATEGORIES]
    sorts = [(f"sort {s}", {"sort": s}) for s in SORTS]
    filters = [
        ("filter device", lambda: {"device": device()}),
        ("filter score range", score_range),
        ("filter label genuine", lambda: {"label": "genuine"}),
        ("filter label attack", lambda: {"label": "attack"}),
        ("filter unlabelled", lambda: {"label": "none"}),
        (
            "filter failed gate",
            lambda: {"category": "low_quality", "gate": rnd.choice(["face_size", "yaw", "pitch", "blur"])},
        ),
        ("filter failed gate, all tab", lambda: {"gate": rnd.choice(["face_size", "yaw", "pitch", "blur"])}),
        ("filter disagreement", lambda: {"min_disagreement": rnd.choice(["0.3", "0.5"]), "sort": "disagreement"}),
        ("filter combined", lambda: {"category": "attack", "label": "none", "device": device(), "sort": "-score"}),
    ]
    return tabs + sorts + [(name, None) for name, _ in filters], dict(filters)


def _first_page_jobs(n: int, first_pages, fmap) -> list:
    """`n` first pages, going round the tabs, sorts and filters."""
    groups = {"tab": "first page, tab", "sort": "first page, sort", "filter": "first page, filter"}
    jobs = []
    for k in range(n):
        name, q = first_pages[k % len(first_pages)]
        jobs.append((groups[name.split(" ")[0]], name, "get", ("gallery", q if q is not None else fmap[name]())))
    return jobs


def _chain_jobs(n: int, rnd: random.Random, device_names) -> list:
    """Chains of next pages, 20-50 pages deep, until they make `n` measured pages."""
    chains = [  # (variant, query) walked 20-50 pages deep
        ("all, score", lambda: {}),
        ("all, -time", lambda: {"sort": "-time"}),
        ("live, -score", lambda: {"category": "live", "sort": "-score"}),
        ("low_quality, disagreement", lambda: {"category": "low_quality", "sort": "disagreement"}),
        ("all, time, unlabelled", lambda: {"label": "none", "sort": "time"}),
        ("device, score", lambda: {"device": device_names[0]}),
    ]
    jobs = []
    used, c = 0, 0
    while used < n:
        name, q = chains[c % len(chains)]
        depth = rnd.randint(20, 50)
        jobs.append(("chain", name, "chain", (q(), depth)))
        used += depth - 1
        c += 1
    return jobs


def _detail_query(rnd: random.Random, cat, dev) -> dict:
    """The gallery state an image detail is opened from (its previous / next follow it)."""
    return rnd.choice(
        [
            {},
            {"category": cat},
            {"category": cat, "sort": "-time"},
            {"label": "none"},
            {"device": dev, "sort": "disagreement"},
        ]
    )
