"""The "Open in Colab" badge: `make release` points it at this repository's GitHub remote, with no file to edit."""

import subprocess

import nbformat
import pytest

from assignments import PW2
from coursekit import cli, colab, layout

PW3 = layout.assignment("pw3_decoding")
FORMS = ["https://github.com/ada-lab/nlp-course", "https://github.com/ada-lab/nlp-course.git",
         "https://github.com/ada-lab/nlp-course/", "https://github.com/ada-lab/nlp-course.git/",
         "http://github.com/ada-lab/nlp-course", "https://ada@github.com/ada-lab/nlp-course.git",
         "git@github.com:ada-lab/nlp-course.git", "git@github.com:ada-lab/nlp-course",
         "ssh://git@github.com/ada-lab/nlp-course.git", "ssh://git@github.com:22/ada-lab/nlp-course/",
         "git://github.com/ada-lab/nlp-course.git"]
ELSEWHERE = ["https://gitlab.com/ada-lab/nlp-course.git", "git@gitlab.com:ada-lab/nlp-course.git", "/srv/git/course.git",
             "file:///srv/git/course.git", "../course", "https://github.com/ada-lab", "https://github.com.evil.org/a/b",
             "https://github.com/ada-lab/nlp-course/tree/main", "https://notgithub.com/ada-lab/nlp-course"]


def git_repo(folder, remote: str | None = None, default_branch: str | None = None):
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    if remote is not None:
        subprocess.run(["git", "-C", str(folder), "remote", "add", "origin", remote], check=True)
    if default_branch is not None:  # what `git clone` records: origin/HEAD -> origin/<the remote's default branch>
        subprocess.run(["git", "-C", str(folder), "symbolic-ref", "refs/remotes/origin/HEAD",
                        f"refs/remotes/origin/{default_branch}"], check=True)
    return folder


@pytest.mark.parametrize("remote", FORMS)
def test_every_form_of_a_github_remote_gives_its_repository(remote, tmp_path):
    assert colab.github_repository(remote) == "ada-lab/nlp-course"
    where = colab.target(git_repo(tmp_path, remote))
    assert (where.repository, where.branch) == ("ada-lab/nlp-course", colab.BRANCH)
    assert colab.release_url(PW2, where.repository, where.branch) == (
        "https://colab.research.google.com/github/ada-lab/nlp-course/blob/main/release/pw2_transformers/"
        "pw2_transformers.ipynb")


@pytest.mark.parametrize("remote", ELSEWHERE)
def test_a_remote_that_is_not_on_github_keeps_the_placeholder_and_says_so(remote, tmp_path):
    assert colab.github_repository(remote) is None
    where = colab.target(git_repo(tmp_path, remote))
    assert where.repository == colab.PLACEHOLDER and "\n" not in where.note
    assert "not on GitHub" in where.note and "placeholder" in where.note and "make release" in where.note


def test_no_remote_or_no_repository_keeps_the_placeholder_in_one_line(tmp_path):
    for folder in (git_repo(tmp_path / "no-remote"), tmp_path / "not-a-repository"):
        folder.mkdir(exist_ok=True)
        where = colab.target(folder)
        assert (where.repository, where.branch) == (colab.PLACEHOLDER, colab.BRANCH)
        assert where.note.startswith("Colab badge: no git remote origin") and "\n" not in where.note
        assert "placeholder" in where.note and "YOUR-GITHUB-ORG" in where.note


def test_the_badge_follows_the_remotes_default_branch_not_the_current_one(tmp_path):
    repo = git_repo(tmp_path, "git@github.com:ada-lab/nlp-course.git", default_branch="spring-2027")
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "-b", "fix-typo"], check=True)
    assert colab.target(repo).branch == "spring-2027"


def test_a_remotes_password_is_never_printed(tmp_path):
    where = colab.target(git_repo(tmp_path, "https://grader:s3cret-token@gitlab.example.org/course.git"))
    assert "s3cret-token" not in where.note and "gitlab.example.org/course.git" in where.note


def test_a_repository_set_in_colab_py_wins_over_the_remote(tmp_path, monkeypatch):
    monkeypatch.setattr(colab, "REPOSITORY", "someone/elsewhere")
    where = colab.target(git_repo(tmp_path, "git@github.com:ada-lab/nlp-course.git"))
    assert (where.repository, where.branch) == ("someone/elsewhere", "main")


def test_make_release_writes_the_remotes_badge_into_the_release_and_says_it_in_one_line(tmp_path, monkeypatch, capsys):
    course = layout.copy_course(tmp_path / "course")
    git_repo(course.root, "ssh://git@github.com/ada-lab/nlp-course.git", default_branch="main")
    monkeypatch.setattr(cli, "COURSE", course)
    committed = nbformat.read(layout.COURSE.release_notebook(PW3), as_version=4)
    assert cli.main(["release", "--assignment", PW3.name]) == 0
    assert capsys.readouterr().out.splitlines() == ["Colab badge: ada-lab/nlp-course, branch main (from git remote origin)"]
    released = nbformat.read(course.release_notebook(PW3), as_version=4)
    assert colab.badge_url(released.cells[0].source) == (
        "https://colab.research.google.com/github/ada-lab/nlp-course/blob/main/release/pw3_decoding/pw3_decoding.ipynb")
    assert released.cells[0].source == colab.with_badge(committed.cells[0].source, PW3, "ada-lab/nlp-course", "main")
    assert released.cells[1:] == committed.cells[1:], "only the badge differs from the committed release"
    source = nbformat.read(course.source_notebook(PW3), as_version=4)
    assert colab.badge_url(source.cells[0].source) == colab.release_url(PW3), "source/ is never written by a release"


@pytest.mark.parametrize("assignment", layout.assignments(), ids=str)
def test_the_committed_release_badge_opens_its_own_notebook_on_github(assignment):
    """Whatever repository `make release` found (the placeholder, without a GitHub remote), the badge opens this
    assignment's release notebook in it."""
    url = colab.badge_url(nbformat.read(layout.COURSE.release_notebook(assignment), as_version=4).cells[0].source)
    repository, _, rest = (url or "").removeprefix("https://colab.research.google.com/github/").partition("/blob/")
    branch = rest.removesuffix(f"/release/{assignment.name}/{assignment.notebook}")
    assert url == colab.release_url(assignment, repository, branch) and repository.count("/") == 1 and branch, url
