from django.core.management.base import BaseCommand, CommandError

from oscar_fashion_ai import conf
from oscar_fashion_ai.ml import weights
from oscar_fashion_ai.ml.datasets import SourceError
from oscar_fashion_ai.ml.embedder import PACKAGE_WEIGHTS
from oscar_fashion_ai.ml.locator import PACKAGE_LOCATOR
from oscar_fashion_ai.ml.training.locator import add_arguments, config_from_args, train


class Command(BaseCommand):
    help = (
        "Train the garment locator of search by photo (the preset crop box) for the photo model in use, on scenes "
        "composed from a labelled photo set's training split. Writes weights + a model card into the data "
        "directory's models/locator/, where search by photo picks it up for that photo model. --from-store composes "
        "the scenes from the store's own product photos instead (test split left out). The same options work "
        "without Django: python -m oscar_fashion_ai.ml.training.locator."
    )

    def add_arguments(self, parser):
        add_arguments(parser)
        parser.add_argument(
            "--install", action="store_true", help=f"Write to the package default ({PACKAGE_LOCATOR.name})."
        )
        parser.add_argument(
            "--from-store",
            action="store_true",
            help="Compose the scenes from the store's public products with an image and a category (the test "
            "split, sha1(UPC) % 5 == 0, left out) instead of --source.",
        )

    def handle(self, *args, **o):
        from pathlib import Path

        from oscar_fashion_ai import model_store

        records = None
        if o["from_store"]:
            from oscar_fashion_ai.adaptation.catalog import collect
            from oscar_fashion_ai.ml.datasets import Record

            catalog = collect(1, model_store.work_dir() / "locator-images")
            records = [Record(it.split_id, it.label, it.path) for it in catalog.training]
            source = "the store's products"
        else:
            source = o["source"] or conf.dataset_path()
            if source is None:
                raise CommandError("No --source and no default data set (set FASHION_AI_DATASET), and no --from-store.")
        photo = o["photo_weights"] or model_store.configured_weights() or PACKAGE_WEIGHTS
        if not Path(photo).exists():
            raise CommandError(f"The photo model {photo} does not exist.")
        digest = weights.sha256(Path(photo))
        out = (
            PACKAGE_LOCATOR
            if o["install"]
            else Path(o["out"] or model_store.locator_dir() / f"locator-{digest[:12]}.safetensors")
        )
        cfg = config_from_args(
            o,
            source=str(source),
            out=str(out),
            photo_weights=str(photo),
            cache=o["cache"] or str(model_store.work_dir() / f"locator-scenes-{digest[:12]}"),
            progress=o["verbosity"] > 0,
            command=weights.management_command_line("fashion_train_locator", o),
        )
        try:
            card = train(cfg, records)
        except (SourceError, ValueError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Wrote {out.name} ({card['weights_bytes'] / 1e3:.0f} kB): held-out scenes box IoU "
                f"{card['metrics']['held_out_scenes_box_iou']:.3f}. Search by photo uses it for this photo model."
            )
        )
