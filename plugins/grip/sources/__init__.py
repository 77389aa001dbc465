"""Sources: partner SQL databases, SFTP drops and local files, read in chunks."""
