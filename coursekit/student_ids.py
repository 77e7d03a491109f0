"""Student ids: what a name must be to become a folder under submitted/ and a student of the gradebook.

A student id comes from whoever made the folder (a student through nbgrader's exchange, an LMS name through
`make collect`, an instructor's copy). It becomes a path on disk, a row of the gradebook, and text in CSV files, logs
and the formgrader's pages, which render it. An id is accepted only if it is printable text of a sane length, with
no markup characters and nothing a path could make use of; any other is never graded, never written to the
gradebook, and shown only escaped (`shown`).
"""

from urllib.parse import quote

MAX_LENGTH = 64
MARKUP = "<>&\"'`"
PATH = "/\\"


def problem(student_id: str) -> str:
    """Why `student_id` can't be a student's id ("" when it can), in words that never quote it."""
    if not student_id:
        return "the student id is empty"
    if len(student_id) > MAX_LENGTH:
        return f"the student id has {len(student_id)} characters, more than the {MAX_LENGTH} an id may have"
    if not student_id.isprintable():
        return "the student id has characters that are not printable (control characters, NUL, line breaks)"
    if any(c in MARKUP for c in student_id):
        return f"the student id has markup characters ({' '.join(sorted(set(MARKUP) & set(student_id)))})"
    if any(c in PATH for c in student_id) or ".." in student_id or student_id.startswith("."):
        return "the student id has path characters (/, \\, .., or a leading dot)"
    if student_id != student_id.strip():
        return "the student id starts or ends with a space"
    return ""


def shown(student_id: str) -> str:
    """`student_id` as a report, a CSV or a page may show it: itself when it is a valid id, else percent-escaped
    (`%3Cimg%20src%3Dx%3E`) and cut to a sane length, so that it shows what came, as inert text."""
    if not problem(student_id):
        return student_id
    escaped = quote(student_id, safe="").replace(".", "%2E")
    return escaped if len(escaped) <= 3 * MAX_LENGTH else escaped[:3 * MAX_LENGTH] + "..."
