from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from liveness.manifest import ManifestError
from monitor.models import Ensemble
from monitor.registry import register_manifest


class Command(BaseCommand):
    help = (
        "Register ONNX liveness models from a TOML manifest: a model manifest ([model]) or an ensemble "
        "manifest ([ensemble] listing model manifests). Checks each manifest against its ONNX file."
    )

    def add_arguments(self, parser):
        parser.add_argument("manifest", type=Path, help="path of the .toml manifest")
        parser.add_argument("--activate", action="store_true", help="make the ensemble the active one")
        parser.add_argument("--threshold", type=float, help="the ensemble's threshold (live if score > threshold)")

    def handle(self, *args, manifest, activate, threshold, **options):
        try:
            result = register_manifest(manifest, activate=activate, threshold=threshold)
        except ManifestError as exc:
            raise CommandError(str(exc)) from None
        if isinstance(result, Ensemble):
            members = ", ".join(m.label for m in result.members.order_by("name"))
            state = "active" if result.is_active else "not active"
            self.stdout.write(f"ensemble {result.name}: threshold {result.threshold:g}, {state}; models {members}")
        else:
            self.stdout.write(f"model {result.label} registered")
