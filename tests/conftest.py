import sys
from pathlib import Path

# The oracle and shared helpers live beside the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent))
