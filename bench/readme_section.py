"""bench/README.md has one section per bench; each bench rewrites only its own."""


def replace_section(readme: str, heading: str, section: str) -> str:
  """`readme` with the section under `heading` (up to the next "## " heading) replaced."""
  start = readme.index(heading)
  end = readme.find("\n## ", start + len(heading))
  return readme[:start] + section + ("" if end < 0 else "\n" + readme[end + 1:])
