/// What can go wrong in storage. Callers treat every one of these as a failure to report, never
/// as "not found".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("a stored record is corrupt or of an unknown version")]
    Corrupt,
    #[error(
        "the store was written by schema version {found}; this build supports up to {supported}"
    )]
    SchemaTooNew { found: u32, supported: u32 },
    #[error("the storage flusher has stopped")]
    FlusherStopped,
    /// The database cannot be reached or did not answer in time (a networked backend): retry.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}
