"""fashion_adapt's garment-locator step at a store's size, measured without installing anything.

    FASHION_VAR_DIR=<a store> python benchmarks/adapt_locator.py [--minutes 6] [--out adapt_locator_studio_store]

On the store's catalog (as fashion_adapt collects it: public products with an image, labelled by their first
category), with the photo model in use: trains a head on the store's training products exactly as the locator step
of ``fashion_adapt`` does (``oscar_fashion_ai.adaptation.locator``, its recipe and budget), then measures on the
same composites of the store's test-split products (each pasted beside a product of another category on a busy
background): the activation-map box, the head just trained, and the package's head when it pairs with the model in
use. Nothing is installed. Writes benchmarks/results/<out>.json.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, django_setup, write

sys.path.insert(0, str(ROOT))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=None, help="budget (default ADAPT_LOCATOR_MAX_MINUTES)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", default="adapt_locator")
    args = parser.parse_args(argv)
    django_setup()
    from oscar_fashion_ai import adaptation, conf, runtime
    from oscar_fashion_ai.adaptation.locator import LOCATOR_RECIPE, adapt_locator, measure_locators
    from oscar_fashion_ai.ml import locator

    started = time.time()
    photo = runtime.get_embedder()
    minutes = args.minutes if args.minutes is not None else float(conf.get("ADAPT_LOCATOR_MAX_MINUTES"))
    lines = []
    with tempfile.TemporaryDirectory(prefix="fashion-ai-adapt-locator-") as tmp:
        work = Path(tmp)
        catalog = adaptation.collect(5, work)
        gallery = adaptation.embed_catalog(photo, catalog.items)
        options = adaptation.Options(threads=args.threads, progress=False)
        result = adapt_locator(
            photo.path,
            photo,
            catalog,
            work,
            minutes,
            options,
            adaptation.Reporter(write=lines.append),
            gallery,
            install=False,
        )
        package = locator.load(photo_sha256=photo.sha256)
        shipped = measure_locators(photo, package, catalog, gallery) if package is not None else None
    write(
        args.out,
        {
            "command": "FASHION_VAR_DIR=<store> python benchmarks/adapt_locator.py"
            + (f" --minutes {args.minutes:g}" if args.minutes is not None else ""),
            "data": f"the store's catalog: {len(catalog.items)} products with an image and a category, "
            f"{int(catalog.test.sum())} in the test split (sha1(UPC) % 5 == 0), {len(catalog.training)} trained on",
            "photo_model": photo.version,
            "recipe": LOCATOR_RECIPE,
            "budget_minutes": minutes,
            "store_trained_head": result,
            "package_head_same_composites": shipped,
            "lines": lines,
            "wall_s": round(time.time() - started, 1),
        },
    )


if __name__ == "__main__":
    main()
