"""The documentation check (`scripts/check_docs.py`, run by CI): it passes on the repository's pages
and fails, naming file and line, on a broken command, flag, script or link."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_docs", ROOT / "scripts" / "check_docs.py")
check_docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_docs)


def test_readme_and_docs_pages_are_consistent_with_the_cli(capsys):
    assert check_docs.main([]) == 0, capsys.readouterr().out


def test_broken_commands_and_links_are_named(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Run `qflow train --env X --stepz 5` or `qflow stacked train --family F --out o`.\n"   # 1: a typo'd flag
        "```bash\n"
        "qflow sweep SPEC.toml \\\n"                                                            # 3: continued
        "    --addres HOST:6379   # a comment\n"
        "qflow trian --env X\n"                                                                 # 5: no such command
        "qflow (guidance_lambda=5) is a label, not a command\n"
        "python scripts/no_such_script.py\n"                                                    # 7
        "qflow data inspect cube-single-play-v0\n"                                             # 8: no --out
        "```\n"
        "See [the method](method.md) and [usage](https://example.org/usage) and `qflow bench`.\n"  # 10
        "## A heading\n"
        "[here](#a-heading) and [there](#no-such-heading), `qflow report` in prose needs no --out\n")  # 12
    problems = check_docs.check([page])
    assert problems == [
        f"{page}:1: `qflow train` has no flag --stepz",
        f"{page}:3: `qflow sweep` has no flag --addres",
        f"{page}:5: `qflow` needs a subcommand (" + ", ".join(check_docs._subparsers(_parser())) + "), got ['trian']",
        f"{page}:8: `qflow data inspect` needs --out",
        f"{page}:7: no file scripts/no_such_script.py",
        f"{page}:10: broken link method.md",
        f"{page}:12: broken anchor #no-such-heading",
    ]
    (tmp_path / "method.md").write_text("# method\n")
    assert len(check_docs.check([page])) == 6


def _parser():
    from qflow.cli import build_parser

    return build_parser()


def load_builder():
    spec = importlib.util.spec_from_file_location("build_results", ROOT / "docs" / "build_results.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    return builder


def test_results_page_is_what_its_builder_makes_from_the_result_files():
    """docs/results.md is generated (no number typed by hand): a hand edit, or a result file changed without
    rebuilding the page, fails here with the fix."""
    builder = load_builder()
    page = (ROOT / "docs" / "results.md").read_text()
    assert builder.build() == page, "docs/results.md differs from its sources: run `python docs/build_results.py`"


def constructed_swing_study(root, e_b, m_b, e_d, e_arm=(0.1, 0.1)):
    """An 8-seed study: (a) swings in every seed; (b) and (d) as given per seed; (c) at the noise floor; (e) on
    the seeds of ``e_arm``. Base seeds 0 and 1 stood at 0 % at 25k."""
    from qflow.training.logs import write_rows

    rows = []
    for seed in range(8):
        write_rows(root / "runs" / "base" / f"seed{seed}" / "eval.csv",
                   [{"step": 25_000, "success": 0.0 if seed < 2 else 0.3, "episodes": 50}])
        rows += [{"arm": "a_no_change", "seed": seed, "S": 0.2, "E": 0.12, "M": 0.2},
                 {"arm": "b_critic_frozen", "seed": seed, "S": 0.01 if m_b[seed] < 0.05 else 0.08, "E": e_b[seed],
                  "M": m_b[seed]},
                 {"arm": "c_actor_frozen", "seed": seed, "S": 0.05, "E": -0.004, "M": 0.2},
                 {"arm": "d_slow_target", "seed": seed, "S": 0.2, "E": e_d[seed], "M": 0.2}]
    rows += [{"arm": "e_reference_sampling", "seed": seed, "S": 0.2, "E": e, "M": 0.2} for seed, e in enumerate(e_arm)]
    write_rows(root / "report" / "per_run.csv", rows)


TESTS_8 = {"H1": {"n": 8, "p": 0.0078, "decision": "supported"},
           "H3": {"n": 8, "p": 0.45, "decision": "no evidence either way"},
           "H4": {"n": 8, "p": 0.0078, "decision": "supported"},
           "H5": {"n": 2, "p": 0.5, "decision": "no evidence either way (2 seeds cannot reach p < 0.05: a lead)"},
           "H6": {"n": 0, "decision": "not enough seeds"},
           "H5 (e vs a)": {"n": "2 vs 8", "mean": -0.02, "p": 0.6, "decision": "reported, not decided on"}}


def test_the_swing_reading_chooses_its_words_by_the_numbers(tmp_path):
    """Section 8.9's prose on a constructed 8-seed study: decisions named as the plan's rule gives them, an arm
    that lowers E in few seeds said not to, seeds whose success stays near 0 named as having no room."""
    builder = load_builder()
    constructed_swing_study(tmp_path, e_b=[0.0, 0.0] + [0.03] * 6, m_b=[0.01, 0.01] + [0.2] * 6,
                            e_d=[0.10] * 3 + [0.15] * 5)
    text = " ".join(builder.swing_reading(tmp_path / "report", tmp_path / "runs", TESTS_8).split())
    assert "(8 seeds in (a); the decisions are the plan's rule above" in text
    assert ("- **The swings are changes of the policy, not evaluation noise** (H4 supported by the plan's rule at 8 "
            "seeds, p = 0.0078; E(a) above 0 in 8 of 8 seeds)") in text
    assert ("(b) lowers E in 8 of 8 seeds (H1 supported by the plan's rule at 8 seeds, p = 0.0078); in seeds 0 and 1 "
            "mean success under (b) stays below 0.05") in text
    assert "(d) lowers E in 3 of 8 seeds (H3: no evidence either way at 8 seeds, p = 0.450)" in text
    assert "(d) does not lower E in most seeds. Part of a lower E is mechanical" in text
    assert "Two readings fit a lower E under (b):" in text
    assert "**Lead: the swings survive the authors' exact update (e)** (H5 at 2 seeds cannot reach p < 0.05" in text
    assert "E is above 0 in 2 of 2 seeds" in text
    assert "| 0 (0 %), 1 (0 %) | +0.120 / 0.200 (2) | +0.000 / 0.010 (2) | +0.100 / 0.200 (2) |" in text
    assert "seeds 4-7 fall into the groups out of sample" in text


def test_the_swing_reading_names_a_contradiction_and_drops_claims_the_numbers_do_not_carry(tmp_path):
    builder = load_builder()
    constructed_swing_study(tmp_path, e_b=[0.2] * 8, m_b=[0.2] * 8, e_d=[0.2] * 8, e_arm=(0.1, -0.02))
    tests = {**TESTS_8, "H1": {"n": 8, "p": 0.0078, "decision": "contradicted"},
             "H3": {"n": 8, "p": 0.0078, "decision": "contradicted"}}
    text = " ".join(builder.swing_reading(tmp_path / "report", tmp_path / "runs", tests).split())
    assert "(b) lowers E in 0 of 8 seeds (H1 contradicted by the plan's rule at 8 seeds, p = 0.0078)" in text
    assert "(b) does not lower E in most seeds. (d) does not lower E in most seeds." in text
    assert "Two readings fit" not in text and "mechanical" not in text and "little room" not in text
    assert "**The authors' exact update (e)** (a lead" in text  # E(e) not above 0 in every seed: no claim
