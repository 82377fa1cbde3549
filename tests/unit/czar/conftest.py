import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.differential.region_standin import install  # noqa: E402

install()
