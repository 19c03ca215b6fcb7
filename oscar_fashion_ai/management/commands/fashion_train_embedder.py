from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from oscar_fashion_ai import conf
from oscar_fashion_ai.ml.datasets import SourceError
from oscar_fashion_ai.ml.embedder import PACKAGE_WEIGHTS
from oscar_fashion_ai.ml.train_embedder import TrainConfig, train


class Command(BaseCommand):
    help = "Fine-tune the Image2Vec embedder on a labelled image set; writes weights + a model card."

    def add_arguments(self, parser):
        d = TrainConfig(source="", out="")
        parser.add_argument("--source", type=Path, help="images.csv layout or <category>/<file> folders "
                            "(default: the configured data set).")
        parser.add_argument("--out", type=Path, default=None,
                            help="Weights file to write (default: a new file under var/models/; use "
                            "--install to replace the package's default weights).")
        parser.add_argument("--install", action="store_true", help=f"Write to the package default ({PACKAGE_WEIGHTS.name}).")
        parser.add_argument("--mode", choices=["auto", "cached", "full"], default=d.mode)
        parser.add_argument("--backbone", default=d.backbone)
        parser.add_argument("--backbone-weights", default=None, help="Local ImageNet weights for torchvision:<arch>.")
        parser.add_argument("--dim", type=int, default=d.dim)
        parser.add_argument("--image-size", type=int, default=d.image_size)
        parser.add_argument("--split-block", type=int, default=d.split_block)
        parser.add_argument("--epochs", type=int, default=d.epochs)
        parser.add_argument("--sketch-share", type=float, default=d.sketch_share,
                            help="Share of training samples shown as XDoG line drawings (0 = photos only).")
        parser.add_argument("--batch-size", type=int, default=d.batch_size)
        parser.add_argument("--lr", type=float, default=d.lr)
        parser.add_argument("--limit", type=int, default=None, help="Train on a random subset of N images.")
        parser.add_argument("--seed", type=int, default=d.seed)
        parser.add_argument("--threads", type=int, default=d.threads)
        parser.add_argument("--device", default=None)
        parser.add_argument("--checkpoint-dir", default=None)
        parser.add_argument("--resume", action="store_true")

    def handle(self, *args, **o):
        from django.conf import settings

        source = o["source"] or conf.dataset_path()
        if source is None:
            raise CommandError("No --source and no default data set (set FASHION_AI_DATASET).")
        out = PACKAGE_WEIGHTS if o["install"] else (o["out"] or Path(settings.BASE_DIR) / "var" / "models" / "embedder.safetensors")
        if not 1 <= o["dim"] <= 512:
            raise CommandError("--dim must be between 1 and 512")
        cfg = TrainConfig(
            source=str(source), out=str(out), mode=o["mode"], backbone=o["backbone"],
            backbone_weights=o["backbone_weights"], dim=o["dim"], image_size=o["image_size"],
            split_block=o["split_block"], epochs=o["epochs"], sketch_share=o["sketch_share"], batch_size=o["batch_size"], lr=o["lr"],
            limit=o["limit"], seed=o["seed"], threads=o["threads"], device=o["device"],
            checkpoint_dir=o["checkpoint_dir"], resume=o["resume"],
            progress=o["verbosity"] > 0,
        )
        try:
            card = train(cfg)
        except (SourceError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        m = card["metrics"]["image_to_image"]
        self.stdout.write(self.style.SUCCESS(
            f"Wrote {out} ({card['weights_bytes'] / 1e6:.1f} MB), version {card['version']}: "
            f"P@5 {m['p_at_5']:.4f}, mAP@10 {m['map_at_10']:.4f}"))
