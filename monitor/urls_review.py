"""URLs of the on-call review queue (monitor/views/review.py)."""

from django.urls import path

from .views import review

app_name = "review"
urlpatterns = [
    path("", review.queue, name="queue"),
    path("<int:pk>/verdict", review.verdict, name="verdict"),
    path("<int:pk>/skip", review.skip, name="skip"),
    path("undo", review.undo, name="undo"),
    path("skips/clear", review.clear_skips, name="clear-skips"),
]
