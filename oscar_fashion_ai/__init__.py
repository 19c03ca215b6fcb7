"""oscar-fashion-ai: deep-learning fashion search and recommendations for django-oscar."""

from pathlib import Path

__version__ = "0.1.0"

#: Add to ``TEMPLATES[0]["DIRS"]`` (after your own template folder): Oscar's product page with "Similar products",
#: the header search form with the photo and sketch search links, the profile page with "Forget my style profile".
#: Each extends (or, for the header form that has no blocks, copies) Oscar's own template.
TEMPLATE_DIR = Path(__file__).resolve().parent / "oscar_templates"
