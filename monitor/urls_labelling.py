"""URLs of the admin labelling pages: admins only, 403 for reviewers and viewers."""

from django.urls import path

from .views import labelling

app_name = "labelling"
urlpatterns = [
    path("", labelling.index, name="index"),
    path("days/<day:day>/", labelling.grid, name="grid"),
    path("images/<int:pk>", labelling.image, name="image"),
    path("import", labelling.import_labels, name="import"),
    path("export.csv", labelling.export, name="export"),
]
