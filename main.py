"""ClinLens from a checkout: the desktop app by default, scripting sub-commands otherwise.

    python main.py                      open the GUI on the bundled demo image
    python main.py FILE_OR_FOLDER ...   open the GUI on these images
    python main.py COMMAND ...          run a command-line tool (see --help)

The same entry point is installed as the ``clinlens`` command (clinlens/command.py).
"""

import sys

from clinlens.command import main

if __name__ == "__main__":
    sys.exit(main())
