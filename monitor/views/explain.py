"""What changed on a day (monitor/explain.py): the page and its JSON. Being built."""

from django.http import Http404

from ..access import VIEW, require


@require(VIEW)
def day_explain(request, day):
    raise Http404("being built")


@require(VIEW)
def api_day_explain(request, day):
    raise Http404("being built")
