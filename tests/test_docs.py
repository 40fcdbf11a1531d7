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
        "```\n"
        "See [the method](method.md) and [usage](https://example.org/usage) and `qflow bench`.\n"  # 9
        "## A heading\n"
        "[here](#a-heading) and [there](#no-such-heading)\n")  # 11
    problems = check_docs.check([page])
    assert problems == [
        f"{page}:1: `qflow train` has no flag --stepz",
        f"{page}:3: `qflow sweep` has no flag --addres",
        f"{page}:5: `qflow` needs a subcommand (" + ", ".join(check_docs._subparsers(_parser())) + "), got ['trian']",
        f"{page}:7: no file scripts/no_such_script.py",
        f"{page}:9: broken link method.md",
        f"{page}:11: broken anchor #no-such-heading",
    ]
    (tmp_path / "method.md").write_text("# method\n")
    assert len(check_docs.check([page])) == 5


def _parser():
    from qflow.cli import build_parser

    return build_parser()


def test_results_page_is_what_its_builder_makes_from_the_result_files():
    """docs/results.md is generated (no number typed by hand): a hand edit, or a result file changed without
    rebuilding the page, fails here with the fix."""
    spec = importlib.util.spec_from_file_location("build_results", ROOT / "docs" / "build_results.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    page = (ROOT / "docs" / "results.md").read_text()
    assert builder.build() == page, "docs/results.md differs from its sources: run `python docs/build_results.py`"
