import sys

from nl_lightning.cli import main

sys.exit(main())
