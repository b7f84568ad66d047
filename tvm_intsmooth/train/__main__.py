"""``python -m tvm_intsmooth.train``: see :mod:`tvm_intsmooth.train.train`."""

import sys

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.train.train import main

if __name__ == "__main__":
    try:
        main()
    except IntSmoothError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
