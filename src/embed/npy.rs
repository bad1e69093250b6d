//! NumPy `.npy` files of embeddings: little-endian float32, `[rows, dim]`,
//! C order. Written atomically; read back only in that layout.

use std::io::Write;
use std::path::Path;

use super::embedder::Embeddings;
use crate::atomic::write_atomic;
use crate::error::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY\x01\x00";

/// Writes `embeddings` as a `.npy` file.
pub fn write_npy(path: &Path, embeddings: &Embeddings) -> Result<()> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        embeddings.rows(),
        embeddings.dim
    );
    // Magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    write_atomic(path, |w| {
        w.write_all(MAGIC)?;
        w.write_all(&(header.len() as u16).to_le_bytes())?;
        w.write_all(header.as_bytes())?;
        for v in &embeddings.data {
            w.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    })
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
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        let err = read_npy(&path).unwrap_err().to_string();
        assert!(err.contains("v.npy") && err.contains("(2, 3)"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
