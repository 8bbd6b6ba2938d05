"""python manage.py threshold_table (--scores FILE.csv | --from D --to D) [--ensemble NAME | --model NAME] ..."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from liveness.scorefile import ScoreFileError
from monitor import threshold_export, threshold_input, thresholds


class Command(BaseCommand):
    help = (
        "The threshold table (SPEC section 5): for each strategy minface x quality and each target FPR, "
        "the threshold, TPR, FPR, counts; plus the ISO/IEC 30107-3 figures (APCER per PAI species, untyped "
        "attacks apart). From a score file or from the labelled images of a date range. A malformed score file "
        "exits with code 2."
    )

    def add_arguments(self, parser):
        parser.add_argument("--scores", metavar="FILE.csv", help="a score file (path,score,label[,...])")
        parser.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", help="first day (database source)")
        parser.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", help="last day (database source)")
        parser.add_argument(
            "--ensemble", metavar="NAME", help="the ensemble (database source; default: the active ensemble)"
        )
        parser.add_argument(
            "--model",
            metavar="NAME",
            help="one model's scores instead of the ensemble score (a member of the ensemble; "
            "for a score file, its score_<NAME> column)",
        )
        parser.add_argument(
            "--fpr",
            nargs="+",
            metavar="F",
            default=None,
            help="target FPRs, fractions (0.001) or percentages (0.1%%); default 0.001 0.01",
        )
        parser.add_argument("--format", choices=sorted(threshold_export.FORMATS), default="text")
        parser.add_argument(
            "--threshold",
            metavar="T",
            help="the threshold of the ISO APCER/BPCER/ACER figures (default: the ensemble's current one for "
            "database data, applied to past scores as a what-if beside production's own decisions; none for a "
            "score file)",
        )

    def handle(self, *args, scores, date_from, date_to, ensemble, model, fpr, format, threshold, **options):
        try:
            fprs = threshold_input.parse_fprs(fpr or [])
            t = threshold_input.parse_threshold(threshold)
            if scores and (date_from or date_to):
                raise threshold_input.TableError("give either --scores FILE or --from/--to, not both")
            if scores:
                if ensemble:
                    raise threshold_input.TableError(
                        "--ensemble selects database data; a score file's ensemble score is its score column "
                        "(use --model NAME for a score_<NAME> column)"
                    )
                inp = threshold_input.file_input(Path(scores), model=model)  # always a path, never CSV text
            elif date_from or date_to:
                if not (date_from and date_to):
                    raise threshold_input.TableError("give both --from and --to")
                inp = threshold_input.database_input(date_from, date_to, ensemble=ensemble, model=model)
            else:
                raise threshold_input.TableError(
                    "give a source: --scores FILE.csv or --from YYYY-MM-DD --to YYYY-MM-DD"
                )
            result = thresholds.threshold_table(inp, fprs, threshold=t)
        except ScoreFileError as exc:
            for line, problem in exc.problems:
                self.stderr.write(f"{exc.source}: line {line}: {problem}")
            raise CommandError(
                f"{exc.source} is malformed: {len(exc.problems)} problem(s), listed above", returncode=2
            ) from None
        except threshold_input.TableError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(threshold_export.FORMATS[format](result), ending="")
