"""The "Open in Colab" badge in the notebook's header: the repository that Colab opens the release from.

`make release` writes the badge into the release notebook's header (its first cell) from this repository's own
GitHub remote, `git remote get-url origin` (https://github.com/owner/name(.git), git@github.com:owner/name.git,
ssh://git@github.com/owner/name.git), on the remote's default branch as git knows it (`origin/HEAD`, which
`git clone` records), else `BRANCH`. Not the current branch: a release made on a feature branch would point at a
branch that goes away once merged. Without a GitHub remote the badge keeps the placeholder, and `make release` says
so in one line. `REPOSITORY`, when set here to something other than the placeholder, wins over the remote.

The instructor notebook (source/, and its text twin) keeps the badge of `REPOSITORY` and `BRANCH` as they are here
(`make notebook` writes it), so that it is the same on every machine; only the release, which students open, gets
the remote's.
"""

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .layout import Assignment

PLACEHOLDER = "YOUR-GITHUB-ORG/transformers-course"  # not a real repository
# INSTRUCTORS: nothing to set when this repository's `origin` is on GitHub. To point the badge at another
# repository (owner/name), set it here; BRANCH is the branch used when git does not know the remote's default one.
REPOSITORY = PLACEHOLDER
BRANCH = "main"

BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
# the forms of a GitHub remote: https (with or without a user), scp-like ssh, ssh:// and git://; then owner/name
_GITHUB_REMOTE = re.compile(r"(?:https?://(?:[^@/]+@)?github\.com/|[\w.-]+@github\.com:|ssh://[\w.-]+@github\.com(?::\d+)?/"
                            r"|git://github\.com/)(?P<owner>[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)/"
                            r"(?P<name>[A-Za-z0-9._-]+?)(?:\.git)?/*")
_BADGE_LINE = re.compile(r"^\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)$", re.M)


def release_url(assignment: Assignment, repository: str = REPOSITORY, branch: str = BRANCH) -> str:
    """The Colab address that opens the assignment's release notebook straight from GitHub."""
    return (f"https://colab.research.google.com/github/{repository}/blob/{branch}/release/{assignment.name}/"
            f"{assignment.notebook}")


def badge(assignment: Assignment, repository: str = REPOSITORY, branch: str = BRANCH) -> str:
    """The badge, as one line of markdown."""
    return f"[![Open In Colab]({BADGE_IMAGE})]({release_url(assignment, repository, branch)})"


def badge_url(markdown: str) -> str | None:
    """The address that the badge in `markdown` opens, or None when it has no badge."""
    match = _BADGE_LINE.search(markdown)
    return match.group(0).rpartition("](")[2][:-1] if match else None


def with_badge(markdown: str, assignment: Assignment, repository: str = REPOSITORY, branch: str = BRANCH) -> str:
    """`markdown` with its badge line set to the assignment's badge; the badge goes after the title when it has none."""
    line = badge(assignment, repository, branch)
    if _BADGE_LINE.search(markdown):
        return _BADGE_LINE.sub(lambda _: line, markdown, count=1)
    title, _, rest = markdown.partition("\n")
    return f"{title}\n\n{line}\n{rest}" if title.startswith("#") else f"{line}\n\n{markdown}"


def github_repository(remote_url: str) -> str | None:
    """owner/name of a GitHub remote's URL, in any of its forms; None for a remote elsewhere (or not a URL)."""
    match = _GITHUB_REMOTE.fullmatch(remote_url.strip())
    return f"{match['owner']}/{match['name']}" if match and match["name"] not in (".", "..") else None


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def _without_credentials(url: str) -> str:
    return re.sub(r"//[^/@]+@", "//", url)


@dataclass(frozen=True)
class Target:
    """Where the badge points, and the one line `make release` says about it."""
    repository: str
    branch: str
    note: str


def target(root: Path) -> Target:
    """The repository and branch of the release's badge, for the course at `root`: REPOSITORY when set here, else the
    GitHub repository of the git remote `origin`, else the placeholder."""
    if REPOSITORY != PLACEHOLDER:
        return Target(REPOSITORY, BRANCH, f"Colab badge: {REPOSITORY}, branch {BRANCH} (REPOSITORY in coursekit/colab.py)")
    url = _git(root, "remote", "get-url", "origin")
    repository = github_repository(url) if url else None
    if repository is None:
        why = f"the git remote origin ({_without_credentials(url)}) is not on GitHub" if url else "no git remote origin"
        return Target(PLACEHOLDER, BRANCH, f"Colab badge: {why}, so it keeps the placeholder {PLACEHOLDER}: push this "
                      "repository to GitHub and run make release again, or set REPOSITORY in coursekit/colab.py")
    head = _git(root, "symbolic-ref", "--short", "refs/remotes/origin/HEAD")  # origin/main, as `git clone` records it
    branch = head.partition("/")[2] if head and head.startswith("origin/") else BRANCH
    return Target(repository, branch, f"Colab badge: {repository}, branch {branch} (from git remote origin)")


def set_release_badge(notebook: Path, assignment: Assignment, where: Target) -> bool:
    """Points the badge in the header of a release notebook at `where`; True when the file changed. The header is
    not an nbgrader cell (no checksum, not in the gradebook), so this changes nothing that grading reads."""
    nb = nbformat.read(notebook, as_version=4)
    header = with_badge(nb.cells[0].source, assignment, where.repository, where.branch)
    if header == nb.cells[0].source:
        return False
    nb.cells[0].source = header
    nbformat.write(nb, notebook)
    return True
