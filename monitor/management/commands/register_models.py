from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from liveness.manifest import ManifestError
from monitor.models import Ensemble, ModelVersion
from monitor.registry import measure_model, register_manifest


def speed_text(mv: ModelVersion) -> str:
    return (
        f"{mv.latency_ms:.2f} ms/image (batch 1, one core), "
        f"{mv.throughput:.0f} images/s at batch {mv.best_batch} (all cores)"
    )


class Command(BaseCommand):
    help = (
        "Register ONNX liveness models from a TOML manifest: a model manifest ([model]) or an ensemble "
        "manifest ([ensemble] listing model manifests). Checks each manifest against its ONNX file, then "
        "measures the speed of each newly registered (or never measured) model on this machine."
    )

    def add_arguments(self, parser):
        parser.add_argument("manifest", type=Path, help="path of the .toml manifest")
        parser.add_argument("--activate", action="store_true", help="make the ensemble the active one")
        parser.add_argument("--threshold", type=float, help="the ensemble's threshold (live if score > threshold)")
        parser.add_argument("--no-measure", action="store_true", help="do not measure the models' speed")

    def handle(self, *args, manifest, activate, threshold, no_measure=False, **options):
        started = timezone.now()  # versions made from now on are new; the others were registered already
        try:
            result = register_manifest(manifest, activate=activate, threshold=threshold)
        except ManifestError as exc:
            raise CommandError(str(exc)) from None
        if isinstance(result, Ensemble):
            models = list(result.members.order_by("name"))
            members = ", ".join(m.label + (" (new)" if m.created_at >= started else "") for m in models)
            state = "active" if result.is_active else "not active"
            self.stdout.write(f"ensemble {result.name}: threshold {result.threshold:g}, {state}; models {members}")
        elif result.created_at < started:
            models = [result]
            self.stdout.write(f"model {result.label} was registered already with this manifest: nothing changed")
        else:
            models = [result]
            self.stdout.write(f"model {result.label} registered")
        if no_measure:
            return
        for mv in models:
            if mv.measured_at is not None:  # new models never are
                continue
            try:
                measure_model(mv)
            except Exception as exc:  # noqa: BLE001 - registered all the same; the models page can retry
                self.stderr.write(f"speed of {mv.label}: not measured: {exc}")
                continue
            self.stdout.write(f"speed of {mv.label}: {speed_text(mv)}")
