"""SECURITY.md (ETSI EN 303 645 provision 5.2-1): a contact, what a reporter can expect,
the supported versions, and the way to docs/security.md."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_security_policy_says_how_to_report_and_when_we_answer() -> None:
    policy = (ROOT / "SECURITY.md").read_text()
    assert "security@denen.example" in policy
    assert "Placeholder" in policy  # the deploying city puts its own address there
    assert "Acknowledgement within 5 working days" in policy
    assert "## Supported versions" in policy
    assert "(docs/security.md)" in policy
    assert (ROOT / "docs" / "security.md").exists()
