"""The devices page (monitor/devices.py). Being built."""

from django.http import Http404

from ..access import VIEW, require


@require(VIEW)
def device_list(request):
    raise Http404("being built")
