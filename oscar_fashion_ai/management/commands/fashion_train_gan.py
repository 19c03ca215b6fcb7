from django.core.management.base import BaseCommand, CommandError

from oscar_fashion_ai import conf
from oscar_fashion_ai.ml import weights
from oscar_fashion_ai.ml.datasets import SourceError
from oscar_fashion_ai.ml.generator import PACKAGE_GENERATOR
from oscar_fashion_ai.ml.training.gan import add_arguments, config_from_args, train


class Command(BaseCommand):
    help = (
        "Train the sketch-to-photo generator (pix2pix) on drawings made from a labelled image set; writes "
        "weights, a model card, sample grids (drawing | generated | real) and checkpoints. On the CPU use a "
        "small run, e.g. --limit 400 --epochs 6 --batch-size 8. Also: python -m oscar_fashion_ai.ml.train_gan."
    )

    def add_arguments(self, parser):
        add_arguments(parser)
        parser.add_argument(
            "--install", action="store_true", help=f"Write to the package default ({PACKAGE_GENERATOR.name})."
        )

    def handle(self, *args, **o):
        source = o["source"] or conf.dataset_path()
        if source is None:
            raise CommandError("No --source and no default data set (set FASHION_AI_DATASET).")
        out = PACKAGE_GENERATOR if o["install"] else (o["out"] or conf.data_dir() / "models" / "sketch-gan.safetensors")
        if o["image_size"] < 32 or o["image_size"] & (o["image_size"] - 1):
            raise CommandError("--image-size must be a power of two, at least 32")

        cfg = config_from_args(
            o,
            source=str(source),
            out=str(out),
            progress=o["verbosity"] > 0,
            command=weights.management_command_line("fashion_train_gan", o),
        )
        try:
            card = train(cfg)
        except (SourceError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Wrote {out} ({card['weights_bytes'] / 1e6:.1f} MB), version {card['version']}: "
                f"test L1 {card['metrics']['test_l1']}"
            )
        )
