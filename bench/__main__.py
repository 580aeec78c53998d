"""`python -m bench`: see bench/runner.py. User errors are one line on stderr and exit code 1."""
import sys

from bench.runner import BenchError, main

if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        sys.exit(130)
