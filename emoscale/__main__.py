import sys

from emoscale.cli import main

sys.exit(main())
