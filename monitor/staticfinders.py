"""Serve Plotly's browser bundle from the pinned `plotly` package as a static file
(`vendor/plotly/plotly.min.js`): no CDN, no copy of a 4.8 MB file in the repository."""

from pathlib import Path

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

BUNDLE = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
PREFIX = "vendor/plotly"


class PlotlyFinder(BaseFinder):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.storage = FileSystemStorage(location=BUNDLE.parent)
        self.storage.prefix = PREFIX

    def check(self, **kwargs):
        return []

    def find(self, path, find_all=False, **kwargs):
        if path == f"{PREFIX}/{BUNDLE.name}" and BUNDLE.is_file():
            return [str(BUNDLE)] if find_all else str(BUNDLE)
        return []

    def list(self, ignore_patterns):
        yield BUNDLE.name, self.storage
