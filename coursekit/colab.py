"""The "Open in Colab" badge in the notebook's header: the repository that Colab opens the release from.

`make notebook` writes the badge into the header cell (the first markdown cell) from `REPOSITORY` and
`BRANCH`: change them here, then run `make notebook release solutions` and commit.
"""

import re

from .layout import Assignment

# INSTRUCTORS: set this to the GitHub repository (owner/name) that holds this course kit, and the branch
# whose release/ students should open. The placeholder below is not a real repository.
REPOSITORY = "YOUR-GITHUB-ORG/transformers-course"
BRANCH = "main"

BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
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
