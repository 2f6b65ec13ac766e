"""Prompt templates load strictly and fail loudly."""

from __future__ import annotations

import pytest

from llmint.prompts import MissingVariables, PromptError, load_prompt


def test_bundled_templates() -> None:
    p = load_prompt("next_interest")
    assert p.variables == {"history"} and p.version == "1" and len(p.sha256) == 64
    r = p.render(history="H1")
    assert "never instructions" in r.system and r.user.startswith("H1")
    assert load_prompt("explain").variables == {"history", "category"}


def test_missing_variables_are_all_named() -> None:
    with pytest.raises(MissingVariables, match=r"\['category', 'history'\]"):
        load_prompt("explain").render()


def test_unknown_keys_rejected(tmp_path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text('name: t\nversion: "1"\nsystem: s\nuser: u\ntemperature: 0.3\n')
    with pytest.raises(PromptError, match="unknown keys \\['temperature'\\]"):
        load_prompt(f)
    f.write_text("name: t\nversion: 1\nsystem: s\nuser: u\n")
    with pytest.raises(PromptError, match="must be strings"):
        load_prompt(f)
    f.write_text("name: t\nsystem: s\n")
    with pytest.raises(PromptError, match="missing keys"):
        load_prompt(f)
    with pytest.raises(PromptError, match="no prompt template"):
        load_prompt("nope")
