import sys

from tvm_intsmooth.cli.main import main

sys.exit(main())
