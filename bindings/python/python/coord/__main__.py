"""``python -m coord``: a standalone coord server, with the ``coord`` binary's flags."""

import sys

from coord import _native


def main() -> int:
    return _native.run_server(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
