from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.shortcuts import render

from .models import CATEGORIES, Ensemble, Image, Run


@login_required
def home(request):
    """The latest days with their per-category counts, and the last runs."""
    rows = Image.objects.values_list("day", "category").annotate(n=Count("id")).order_by("-day")
    days: dict = {}
    for day, category, n in rows:
        days.setdefault(day, dict.fromkeys(CATEGORIES, 0))[category] = n
    ctx = {
        "categories": CATEGORIES,
        "days": [(d, [c[k] for k in CATEGORIES], sum(c.values())) for d, c in list(days.items())[:31]],
        "runs": Run.objects.select_related("ensemble")[:15],
        "ensemble": Ensemble.objects.filter(is_active=True).first(),
    }
    return render(request, "monitor/home.html", ctx)
