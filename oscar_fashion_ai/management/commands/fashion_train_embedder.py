from django.core.management.base import BaseCommand, CommandError

from oscar_fashion_ai import conf
from oscar_fashion_ai.ml import backbones, weights
from oscar_fashion_ai.ml.datasets import SourceError
from oscar_fashion_ai.ml.embedder import PACKAGE_WEIGHTS
from oscar_fashion_ai.ml.training.embedder import add_arguments, config_from_args, train


class Command(BaseCommand):
    help = (
        "Fine-tune the Image2Vec embedder on a labelled image set; writes weights + a model card. "
        "The same options work without Django: python -m oscar_fashion_ai.ml.train_embedder."
    )

    def add_arguments(self, parser):
        add_arguments(parser)
        parser.add_argument(
            "--install", action="store_true", help=f"Write to the package default ({PACKAGE_WEIGHTS.name})."
        )

    def handle(self, *args, **o):
        source = o["source"] or conf.dataset_path()
        if source is None:
            raise CommandError("No --source and no default data set (set FASHION_AI_DATASET).")
        out = PACKAGE_WEIGHTS if o["install"] else (o["out"] or conf.data_dir() / "models" / "embedder.safetensors")
        if not 1 <= o["dim"] <= backbones.MAX_DIM:
            raise CommandError(f"--dim must be between 1 and {backbones.MAX_DIM}")

        cfg = config_from_args(
            o,
            source=str(source),
            out=str(out),
            progress=o["verbosity"] > 0,
            command=weights.management_command_line("fashion_train_embedder", o),
        )
        try:
            card = train(cfg)
        except (SourceError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        m = card["metrics"]["image_to_image"]
        self.stdout.write(
            self.style.SUCCESS(
                f"Wrote {out} ({card['weights_bytes'] / 1e6:.1f} MB), version {card['version']}: "
                f"P@5 {m['p_at_5']:.4f}, mAP@10 {m['map_at_10']:.4f}"
            )
        )
