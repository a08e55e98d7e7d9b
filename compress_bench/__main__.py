"""``python -m compress_bench`` is the ``compress-bench`` command."""

from compress_bench import signals

if __name__ == "__main__":
    signals.hold()  # first: a signal during the slow imports of the command is reported
    from compress_bench.cli import main

    main()
