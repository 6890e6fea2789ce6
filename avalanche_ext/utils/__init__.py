"""Small helpers shared by the runner and the report.

Nothing here imports torch or matplotlib at module load.
"""

from avalanche_ext.utils.jsonable import to_jsonable

__all__ = ["to_jsonable"]
