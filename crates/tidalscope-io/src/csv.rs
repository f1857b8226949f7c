//! Catalogue CSV files: an atomic writer (and, later, the catalogue reader).

use crate::atomic::AtomicFile;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Writes a CSV table row by row; the file appears when [`CsvWriter::finish`]
/// succeeds.
pub struct CsvWriter {
    path: PathBuf,
    writer: ::csv::Writer<AtomicFile>,
    columns: usize,
}

impl CsvWriter {
    /// Starts a table with the given column names.
    pub fn create<S: AsRef<str>>(path: &Path, header: &[S]) -> Result<Self> {
        let file = AtomicFile::create(path)?;
        let mut writer = ::csv::Writer::from_writer(file);
        writer.write_record(header.iter().map(|s| s.as_ref())).map_err(|e| Error::format(path, e.to_string()))?;
        Ok(Self { path: path.to_path_buf(), writer, columns: header.len() })
    }

    /// Appends one row; it must have one field per column.
    pub fn row<S: AsRef<[u8]>>(&mut self, fields: impl IntoIterator<Item = S>) -> Result<()> {
        let record: ::csv::ByteRecord = fields.into_iter().collect();
        if record.len() != self.columns {
            return Err(Error::format(
                &self.path,
                format!("row of {} fields for {} columns", record.len(), self.columns),
            ));
        }
        self.writer.write_byte_record(&record).map_err(|e| Error::format(&self.path, e.to_string()))
    }

    /// Flushes and moves the file into place.
    pub fn finish(self) -> Result<()> {
        let path = self.path;
        let file = self.writer.into_inner().map_err(|e| Error::format(&path, e.to_string()))?;
        file.commit()
    }
}
