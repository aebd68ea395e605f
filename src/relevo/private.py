"""Files relevo creates are private to the user who runs it: folders 0700, files 0600.

The log keeps request data (features, routing keys); the home, the database, the spool, the
dead letters and exports must not be readable by other accounts on the machine.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) as 0700 folders; an existing folder is left as
    it is, since it may be one the user chose and shares on purpose."""
    missing = []
    here = path
    while not here.exists():
        missing.append(here)
        if here.parent == here:
            break
        here = here.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir(mode=DIR_MODE)
            # mkdir's mode is filtered by the umask; 0700 is what is meant
            os.chmod(folder, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create `path` as an empty 0600 file if it does not exist, or make it 0600 if it does
    (relevo's own files only), so that whatever writes it next writes a private file."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    os.chmod(path, FILE_MODE)  # an existing file keeps its mode through O_CREAT
    return path
