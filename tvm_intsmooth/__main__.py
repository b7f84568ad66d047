"""``python -m tvm_intsmooth``: the ``intsmooth`` command."""

import sys

from .cli.main import main

sys.exit(main())
