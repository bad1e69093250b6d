//! NumPy `.npy` files of embeddings: little-endian float32, `[rows, dim]`,
//! C order. Written atomically; read back only in that layout.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use super::embedder::Embeddings;
use crate::atomic::write_atomic;
use crate::error::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY\x01\x00";

/// The header of a float32 `[rows, dim]` file: magic, version, length and
/// the padded dictionary.
fn header(rows: usize, dim: usize) -> Vec<u8> {
    let mut dict =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    dict.push('\n');
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    bytes.extend_from_slice(dict.as_bytes());
    bytes
}

/// Writes `embeddings` as a `.npy` file.
pub fn write_npy(path: &Path, embeddings: &Embeddings) -> Result<()> {
    write_atomic(path, |w| {
        w.write_all(&header(embeddings.rows(), embeddings.dim))?;
        for v in &embeddings.data {
            w.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    })
}

/// Rows of a `.npy` file being written, by index, in any order.
pub struct NpyRows<'a> {
    out: &'a mut BufWriter<File>,
    start: u64,
    rows: usize,
    dim: usize,
}

impl NpyRows<'_> {
    /// Writes `values` (`dim` of them) as row `index`.
    pub fn write(&mut self, index: usize, values: &[f32]) -> std::io::Result<()> {
        assert!(
            index < self.rows && values.len() == self.dim,
            "row {index} of the file's shape"
        );
        self.out
            .seek(SeekFrom::Start(self.start + (index * self.dim * 4) as u64))?;
        for v in values {
            self.out.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    }
}

/// Writes a float32 `[rows, dim]` `.npy` file whose rows `fill` writes as
/// they come, so they need not all be in memory; rows it leaves unwritten
/// are zeros. Atomic like [`write_npy`]: an error from `fill` leaves no file.
pub fn write_npy_rows(
    path: &Path,
    rows: usize,
    dim: usize,
    fill: impl FnOnce(&mut NpyRows) -> Result<()>,
) -> Result<()> {
    let mut failed = None;
    let written = write_atomic(path, |w| {
        let head = header(rows, dim);
        w.write_all(&head)?;
        w.flush()?;
        let start = head.len() as u64;
        w.get_ref().set_len(start + (rows * dim * 4) as u64)?;
        let mut writer = NpyRows {
            out: w,
            start,
            rows,
            dim,
        };
        fill(&mut writer).map_err(|e| {
            let io = std::io::Error::other(e.to_string());
            failed = Some(e);
            io
        })
    });
    match (failed, written) {
        (Some(e), _) => Err(e),
        (None, result) => result,
    }
}

/// Reads a `.npy` file [`write_npy`] wrote (float32, two dimensions).
pub fn read_npy(path: &Path) -> Result<Embeddings> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |what: &str| Error::Load {
        path: path.to_path_buf(),
        message: format!("not a float32 [rows, dim] .npy file: {what}"),
    };
    if bytes.len() < 10 || &bytes[..8] != MAGIC {
        return Err(bad("no version 1.0 header"));
    }
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = bytes
        .get(10..10 + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("a cut header"))?;
    if !header.contains("'descr': '<f4'") || !header.contains("'fortran_order': False") {
        return Err(bad(header.trim()));
    }
    let shape: Vec<usize> = header
        .split_once("'shape': (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(dims, _)| {
            dims.split(',')
                .filter_map(|d| d.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let [rows, dim] = shape[..] else {
        return Err(bad(header.trim()));
    };
    let data = &bytes[10 + header_len..];
    if data.len() != rows * dim * 4 {
        return Err(bad(&format!(
            "{} data bytes for shape ({rows}, {dim})",
            data.len()
        )));
    }
    Ok(Embeddings {
        dim,
        data: data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        truncated: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_and_damage_is_named() {
        let dir = std::env::temp_dir().join(format!("gcse-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v.npy");
        let vectors = Embeddings {
            dim: 3,
            data: vec![1.0, -2.5, 0.0, 3.25, 1e-7, f32::MAX],
            truncated: 0,
        };
        write_npy(&path, &vectors).unwrap();
        assert_eq!(read_npy(&path).unwrap(), vectors);
        let streamed = dir.join("s.npy");
        write_npy_rows(&streamed, 2, 3, |rows| {
            rows.write(1, vectors.row(1)).unwrap();
            rows.write(0, vectors.row(0)).unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(
            std::fs::read(&streamed).unwrap(),
            std::fs::read(&path).unwrap()
        );
        let err = write_npy_rows(&dir.join("f.npy"), 2, 3, |rows| {
            rows.write(0, vectors.row(0)).unwrap();
            Err(Error::Usage("stopped halfway".into()))
        })
        .unwrap_err();
        assert!(err.to_string().contains("stopped halfway"), "{err}");
        assert!(!dir.join("f.npy").exists(), "no file after a failure");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        let err = read_npy(&path).unwrap_err().to_string();
        assert!(err.contains("v.npy") && err.contains("(2, 3)"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
