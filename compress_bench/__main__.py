"""``python -m compress_bench`` is the ``compress-bench`` command."""

from compress_bench.cli import main

if __name__ == "__main__":
    main()
