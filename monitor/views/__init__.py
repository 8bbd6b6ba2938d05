"""Views, one module per page family: overview, gallery (day gallery and image detail), media
(protected image files), runs, api."""
