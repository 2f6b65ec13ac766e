"""Prompt templates as data: `prompts/*.yaml` loaded strictly and rendered with string.Template.

A template file has exactly the keys `name`, `version`, `description`,
`system` and `user`; unknown or missing keys are an error. Rendering with a
missing variable raises `MissingVariables` naming every missing one. The
file's SHA-256 identifies the exact template in the audit log. This module
knows nothing about models or histories.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from pathlib import Path

from .errors import LlmintError

ALLOWED_KEYS = frozenset({"name", "version", "description", "system", "user"})
REQUIRED_KEYS = frozenset({"name", "version", "system", "user"})


class MissingVariables(LlmintError, KeyError):
    """A template was rendered without some of its variables."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PromptError(LlmintError, ValueError):
    """A prompt template file is malformed."""


@dataclass(frozen=True)
class RenderedPrompt:
    """A rendered prompt: system and user messages."""

    system: str
    user: str


@dataclass(frozen=True)
class PromptTemplate:
    """A loaded template; `sha256` is the hash of its file's bytes."""

    name: str
    version: str
    system: str
    user: str
    description: str = ""
    sha256: str = ""

    @property
    def variables(self) -> set[str]:
        """The $names the template uses."""
        return set(string.Template(self.system).get_identifiers()) | set(
            string.Template(self.user).get_identifiers()
        )

    def render(self, **variables: object) -> RenderedPrompt:
        """Substitute the variables; raise MissingVariables listing all that are missing.

        Values are inserted verbatim: fencing customer text is the serialiser's job.
        """
        missing = sorted(self.variables - variables.keys())
        if missing:
            raise MissingVariables(f"prompt {self.name!r} needs variables {missing}")
        vals = {k: str(v) for k, v in variables.items()}
        return RenderedPrompt(
            string.Template(self.system).substitute(vals), string.Template(self.user).substitute(vals)
        )


def prompts_dir() -> Path:
    """The folder of bundled templates (`prompts/` beside the package)."""
    from .paths import repo_root

    return repo_root() / "prompts"


def load_prompt(name_or_path: str | Path) -> PromptTemplate:
    """Load `prompts/<name>.yaml` or a template file at a path."""
    import yaml

    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = prompts_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        raise PromptError(f"no prompt template at {path}")
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise PromptError(f"{path}: not valid UTF-8 YAML: {err}") from err
    if not isinstance(data, dict):
        raise PromptError(f"{path}: expected a mapping of {sorted(ALLOWED_KEYS)}")
    unknown = sorted(set(data) - ALLOWED_KEYS)
    if unknown:
        raise PromptError(f"{path}: unknown keys {unknown}; allowed: {sorted(ALLOWED_KEYS)}")
    missing = sorted(REQUIRED_KEYS - set(data))
    if missing:
        raise PromptError(f"{path}: missing keys {missing}")
    bad = [k for k in data if not isinstance(data[k], str)]
    if bad:
        raise PromptError(f"{path}: keys {sorted(bad)} must be strings (quote versions, e.g. \"1\")")
    return PromptTemplate(
        name=data["name"], version=data["version"], system=data["system"], user=data["user"],
        description=data.get("description", ""), sha256=hashlib.sha256(raw).hexdigest(),
    )
