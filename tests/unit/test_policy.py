"""The automatic policy's decision: promote a shadowed candidate only when it is no worse on the same readings."""

from __future__ import annotations

from stream_app.ops.policy import Criteria, decide

CRITERIA = Criteria(min_windows=1000, max_over_line_share=0.01)
BASE = {"windows": "5000", "champion_windows": "5000", "over_line": "5", "champion_over_line": "400",
        "alerts_opened": "0", "champion_alerts_opened": "7"}  # fmt: skip


def test_a_calmer_candidate_is_promoted() -> None:
    verdict = decide(BASE, CRITERIA)
    assert verdict.promote and "0.100% over the line (current 8.000%)" in verdict.reason


def test_too_few_windows_more_alerts_or_lower_precision_keep_the_current_model() -> None:
    assert not decide(BASE | {"windows": "10"}, CRITERIA).promote
    assert not decide(BASE | {"over_line": "500"}, CRITERIA).promote
    assert not decide(BASE | {"over_line": "300", "champion_over_line": "400"}, CRITERIA).promote  # 6% > 1% cap
    assert not decide(BASE | {"alerts_opened": "9"}, CRITERIA).promote
    verdict = decide(BASE, CRITERIA, precision=(0.5, 0.8))
    assert not verdict.promote and "precision" in verdict.reason


def test_autopilot_is_off_by_default(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "FLOORWATCH_MODEL_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "stream_app", "models", "autopilot"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr == "error: the automatic policy is off: set FLOORWATCH_POLICY_ENABLED=true to run it\n"
