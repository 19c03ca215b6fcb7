from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from oscar_fashion_ai import conf
from oscar_fashion_ai.ml import weights
from oscar_fashion_ai.ml.datasets import SourceError
from oscar_fashion_ai.ml.embedder import PACKAGE_SKETCH_WEIGHTS, PACKAGE_WEIGHTS
from oscar_fashion_ai.ml.training.sketch_encoder import add_arguments, config_from_args, train


class Command(BaseCommand):
    help = (
        "Train the sketch encoder for the configured photo model: drawings are mapped into its vector space, "
        "so search by sketch works without reindexing. Writes weights + a model card. The same options work "
        "without Django: python -m oscar_fashion_ai.ml.train_sketch_encoder."
    )

    def add_arguments(self, parser):
        add_arguments(parser)
        parser.add_argument(
            "--install", action="store_true", help=f"Write to the package default ({PACKAGE_SKETCH_WEIGHTS.name})."
        )

    def handle(self, *args, **o):
        source = o["source"] or conf.dataset_path()
        if source is None:
            raise CommandError("No --source and no default data set (set FASHION_AI_DATASET).")
        from oscar_fashion_ai import model_store

        photo = o["photo_weights"] or model_store.configured_weights() or PACKAGE_WEIGHTS
        if not Path(photo).exists():
            raise CommandError(f"The photo model {photo} does not exist.")
        out = (
            PACKAGE_SKETCH_WEIGHTS
            if o["install"]
            else (o["out"] or conf.data_dir() / "models" / "sketch-encoder.safetensors")
        )

        cfg = config_from_args(
            o,
            source=str(source),
            out=str(out),
            photo_weights=str(photo),
            progress=o["verbosity"] > 0,
            command=weights.management_command_line("fashion_train_sketch_encoder", o),
        )
        try:
            card = train(cfg)
        except (SourceError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        split = "test" if "sketch_to_image" in card["metrics"] else "validation"
        m = card["metrics"].get("sketch_to_image") or card["metrics"]["validation_sketch_to_image"]
        self.stdout.write(
            self.style.SUCCESS(
                f"Wrote {out} ({card['weights_bytes'] / 1e6:.1f} MB), version {card['version']}: {split} sketch P@5 "
                f"{m['p_at_5']:.4f}, source in top 5 {m['source_hit_at_5']:.3f}. "
                f"Set FASHION_AI['SKETCH_ENCODER_WEIGHTS'] "
                f"to it (no reindex needed)."
            )
        )
