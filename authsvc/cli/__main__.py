"""``python -m authsvc.cli``: the ``authsvc`` command."""

from . import main

main()
