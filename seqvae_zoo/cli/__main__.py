"""``python -m seqvae_zoo.cli``: the same as the ``seqvae`` command."""

from seqvae_zoo.cli import main

raise SystemExit(main())
