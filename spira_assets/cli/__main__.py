import sys

from spira_assets.cli import main

sys.exit(main())
