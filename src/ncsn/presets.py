"""The presets shipped with the package (``ncsn/configs/*.yaml``) and the config-or-preset lookup
of ``--config``."""

from __future__ import annotations

from pathlib import Path

from ncsn.errors import NCSNError

PRESETS = Path(__file__).resolve().parent / "configs"


def preset_names() -> list[str]:
    """The presets shipped in ncsn/configs (``digits``, ``mnist``, …)."""
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def find(name: str | None, flag: str = "--config") -> Path | None:
    """A config file path, or a preset name such as ``digits``; ``flag`` names it in errors."""
    if name is None:
        return None
    path = Path(name)
    preset = PRESETS / f"{name}.yaml"
    if path.is_dir():
        hidden = f" (it hides the preset {name!r}: write {preset})" if preset.exists() else ""
        raise NCSNError(f"{flag} {name!r}: {path} is a directory, not a YAML config file{hidden}")
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    if preset.exists():
        return preset
    raise NCSNError(
        f"{flag} {name!r}: no such file, nor a preset (presets: {', '.join(preset_names())})"
    )
