"""The one error type of kipd.data: a dataset that cannot be read or fetched."""


class DatasetError(ValueError):
    """A dataset file is missing, truncated, corrupt, fails its checksum, or cannot be
    downloaded.

    The message names the file and says how to get a good copy. Subclasses ``ValueError``
    so that code catching bad input in general also catches it.
    """
