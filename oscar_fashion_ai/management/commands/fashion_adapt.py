import json

from django.core.management.base import BaseCommand, CommandError

from oscar_fashion_ai import conf


class Command(BaseCommand):
    help = (
        "Adapt the photo model to this store's catalog: train a candidate on the public products with images "
        "(labels = first category; test-split products, sha1(upc) % 5 == 0, are never trained on), measure it "
        "and the model in use on the test split, install it into FASHION_AI['MODELS_DIR'] only if it is better, "
        "then reindex (search keeps the model in use until the new vectors are complete). --rollback restores an "
        "installed version, --list shows them."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--max-minutes",
            type=float,
            default=None,
            help="Training budget: stop after the epoch that passes it (default FASHION_AI['ADAPT_MAX_MINUTES']).",
        )
        parser.add_argument(
            "--sketch-minutes",
            type=float,
            default=None,
            help="After installing a photo model: train a sketch encoder for it within this budget, "
            "installed only if it beats the photo model on the store's drawings (default "
            "FASHION_AI['ADAPT_SKETCH_MAX_MINUTES']; 0 skips it).",
        )
        parser.add_argument(
            "--locator-minutes",
            type=float,
            default=None,
            help="After installing a photo model: train a garment locator (search by photo's preset crop box) for "
            "it within this budget, installed only if it beats the activation-map box on the store's test split "
            "(default FASHION_AI['ADAPT_LOCATOR_MAX_MINUTES']; 0 skips it).",
        )
        parser.add_argument("--resume", action="store_true", help="Continue an interrupted run from its checkpoint.")
        parser.add_argument(
            "--min-per-category",
            type=int,
            default=5,
            help="Training products a category needs to be trained on (others are left out, and named).",
        )
        parser.add_argument("--min-products", type=int, default=30, help="Training products needed in all.")
        parser.add_argument("--min-test", type=int, default=10, help="Test-split products needed to measure on.")
        parser.add_argument(
            "--min-gain",
            type=float,
            default=0.0,
            help="Install only when the candidate's P@5 beats the model in use's by more than this.",
        )
        parser.add_argument("--no-install", dest="install", action="store_false", help="Measure only.")
        parser.add_argument(
            "--reindex",
            choices=["queue", "sync", "none"],
            default="queue",
            help="After installing: queue the reindex for the workers (default), run it in this "
            "process, or leave it to `fashion_reindex`.",
        )
        parser.add_argument("--epochs", type=int, default=None, help="Training epochs (default: the recipe's).")
        parser.add_argument(
            "--image-size",
            type=int,
            default=None,
            help="Input size of the candidate in pixels (default: the recipe's; smaller trains faster).",
        )
        parser.add_argument("--threads", type=int, default=0)
        parser.add_argument("--workers", type=int, default=0, help="Processes that decode images (0 = CPUs).")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--keep-work", action="store_true", help="Keep the decoded images for the next run.")
        parser.add_argument(
            "--rollback",
            nargs="?",
            const="",
            default=None,
            metavar="VERSION",
            help="Use an installed version again (default: the previous one; 'package': the "
            "package's shipped model), then reindex.",
        )
        parser.add_argument("--list", action="store_true", help="List the installed versions.")
        parser.add_argument("--json", action="store_true", help="Print the outcome as one JSON object.")

    def handle(self, *args, **opts):
        from oscar_fashion_ai import adaptation, model_store
        from oscar_fashion_ai.ml.weights import management_command_line

        if opts["list"]:
            return self._list(model_store)
        reporter = adaptation.Reporter(write=(lambda text: None) if opts["json"] else self.stdout.write)
        try:
            if opts["rollback"] is not None:
                result = adaptation.rollback(opts["rollback"] or None, opts["reindex"], reporter)
            else:
                for name in ("max_minutes", "min_gain", "sketch_minutes", "locator_minutes"):
                    if opts[name] is not None and opts[name] < 0:
                        raise CommandError(f"--{name.replace('_', '-')} must not be negative")
                for name in ("min_per_category", "min_products", "min_test"):
                    if opts[name] < 1:
                        raise CommandError(f"--{name.replace('_', '-')} must be at least 1")
                if opts["image_size"] is not None and not 32 <= opts["image_size"] <= 512:
                    raise CommandError("--image-size must be between 32 and 512")
                recipe = {k: opts[k] for k in ("epochs", "image_size") if opts[k]}
                options = adaptation.Options(
                    max_minutes=opts["max_minutes"],
                    resume=opts["resume"],
                    min_per_category=opts["min_per_category"],
                    min_products=opts["min_products"],
                    min_test=opts["min_test"],
                    min_gain=opts["min_gain"],
                    install=opts["install"],
                    reindex=opts["reindex"],
                    threads=opts["threads"],
                    workers=opts["workers"],
                    seed=opts["seed"],
                    progress=opts["verbosity"] > 0 and not opts["json"],
                    keep_work=opts["keep_work"],
                    recipe=recipe,
                    sketch_minutes=opts["sketch_minutes"],
                    locator_minutes=opts["locator_minutes"],
                    sketch_recipe={"epochs": opts["epochs"]} if opts["epochs"] else {},
                    command=management_command_line(
                        "fashion_adapt",
                        {k: v for k, v in opts.items() if k not in {"json", "list", "rollback", "install"}},
                    ),
                )
                from django.utils import timezone

                from oscar_fashion_ai.models import AdaptationRun

                row = AdaptationRun.objects.create(
                    requested_by="fashion_adapt", state=AdaptationRun.State.RUNNING, date_started=timezone.now()
                )
                lines = []

                def write(text):
                    lines.append(text)
                    if not opts["json"]:
                        self.stdout.write(text)

                reporter = adaptation.Reporter(row, write=write)
                try:
                    result = adaptation.run(options, reporter, row)
                except BaseException as exc:
                    AdaptationRun.objects.filter(pk=row.pk).update(
                        state=AdaptationRun.State.FAILED,
                        date_finished=timezone.now(),
                        progress=1.0,
                        stage="",
                        message=str(exc)
                        if isinstance(exc, adaptation.AdaptError)
                        else f"Stopped: {type(exc).__name__}: {exc}. The model in use is unchanged.",
                    )
                    raise
                AdaptationRun.objects.filter(pk=row.pk).update(
                    state=AdaptationRun.State.INSTALLED if result.get("installed") else AdaptationRun.State.KEPT,
                    message="\n".join(lines),
                    result=result,
                    installed_version=result.get("version", ""),
                    date_finished=timezone.now(),
                    stage="Done",
                    progress=1.0,
                )
        except adaptation.AdaptError as exc:
            raise CommandError(str(exc)) from exc
        if opts["json"]:
            self.stdout.write(json.dumps(result, default=str))
        elif opts["rollback"] is None:
            style = self.style.SUCCESS if result.get("installed") else self.style.WARNING
            self.stdout.write(style(f"Done in {result['seconds']:.0f} s."))
        return None

    def _list(self, model_store):
        if conf.get("EMBEDDER_WEIGHTS"):
            self.stdout.write(
                f"FASHION_AI['EMBEDDER_WEIGHTS'] = {conf.get('EMBEDDER_WEIGHTS')} (the models folder is not used)"
            )
        self.stdout.write(f"Models folder: {model_store.models_dir()}")
        for v in model_store.versions():
            a = v["adaptation"]
            measured = ""
            if a:
                measured = (
                    f"  store P@5 {a['model_in_use']['p_at_5']:.4f} -> {a['candidate']['p_at_5']:.4f} "
                    f"({a.get('date', '')})"
                )
            mark = "*" if v["active"] else " "
            self.stdout.write(f"{mark} {v['version']}{measured}")
