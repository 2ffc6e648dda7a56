"""Guest-side shell scripts the chaos runner runs in the lab host (lab.remote.run_script): real files,
their values passed as quoted positional parameters."""

from pathlib import Path

GUEST_DIR = Path(__file__).resolve().parent


def script(name: str) -> Path:
    """chaos/guest/NAME (e.g. `stop.sh`)."""
    return GUEST_DIR / name
